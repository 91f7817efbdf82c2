"""S3 XML: the documents the gateway answers with, and the two it reads (DeleteObjects, CompleteMultipartUpload)."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from fluxon_fs.s3_gateway.errors import S3Error

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_REQUEST_XML_BYTES = 2 * 1024 * 1024
"""Largest XML request body read (1000 keys to delete, 10000 parts to complete fit)."""

Tree = Mapping[str, Any] | Iterable[tuple[str, Any]]
"""An element's children: ``{tag: text}``, or ``(tag, text | Tree | list of Tree)`` pairs in order."""


def iso_time(seconds: float) -> str:
    """``2026-01-05T12:00:00.000Z`` as listings show times."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def http_time(seconds: float) -> str:
    """``Mon, 05 Jan 2026 12:00:00 GMT`` as headers show times."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _fill(parent: ET.Element, children: Tree) -> None:
    items = children.items() if isinstance(children, Mapping) else children
    for tag, value in items:
        if value is None:
            continue
        element = ET.SubElement(parent, tag)
        if isinstance(value, Mapping | list | tuple):
            _fill(element, value)
        elif isinstance(value, bool):
            element.text = "true" if value else "false"
        else:
            element.text = str(value)


def document(root: str, children: Tree) -> bytes:
    """A namespaced S3 XML document."""
    element = ET.Element(root, xmlns=NAMESPACE)
    _fill(element, children)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element, encoding="utf-8", xml_declaration=False)


def error_document(error: S3Error, request_id: str) -> bytes:
    """The ``<Error>`` body of a refusal."""
    element = ET.Element("Error")
    _fill(element, [("Code", error.code), ("Message", error.message), ("Resource", error.resource or None)])
    _fill(element, [("RequestId", request_id)])
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element, encoding="utf-8")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_request_xml(body: bytes, root: str) -> ET.Element:
    """The request body's root element, which must be ``root``; anything else is ``MalformedXML``.

    expat (the parser behind ElementTree) refuses entity expansion attacks since 2.4.1, and the body
    is bounded by :data:`MAX_REQUEST_XML_BYTES` before it gets here.
    """
    if "<!DOCTYPE" in body[:1024].decode("utf-8", "replace").upper():
        raise S3Error("MalformedXML", "DOCTYPE declarations are not accepted")
    try:
        element = ET.fromstring(body)
    except ET.ParseError as exc:
        raise S3Error("MalformedXML", f"The XML you provided was not well-formed: {exc}") from None
    if _local(element.tag) != root:
        raise S3Error("MalformedXML", f"expected a <{root}> document, got <{_local(element.tag)}>")
    return element


def children(element: ET.Element, tag: str) -> list[ET.Element]:
    """Direct children named ``tag`` (any namespace)."""
    return [child for child in element if _local(child.tag) == tag]


def child_text(element: ET.Element, tag: str) -> str | None:
    """The text of the first direct child named ``tag``."""
    found = children(element, tag)
    return None if not found else (found[0].text or "")


def delete_keys(body: bytes) -> tuple[list[str], bool]:
    """Keys of a DeleteObjects request, and whether it asked for a quiet answer."""
    root = parse_request_xml(body, "Delete")
    keys = []
    for item in children(root, "Object"):
        key = child_text(item, "Key")
        if key is None:
            raise S3Error("MalformedXML", "every <Object> needs a <Key>")
        keys.append(key)
    if not keys or len(keys) > 1000:
        raise S3Error("MalformedXML", "a DeleteObjects request names 1 to 1000 keys")
    return keys, (child_text(root, "Quiet") or "").strip().lower() == "true"


def completed_parts(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag without quotes) of a CompleteMultipartUpload request, as listed."""
    root = parse_request_xml(body, "CompleteMultipartUpload")
    parts = []
    for item in children(root, "Part"):
        number, etag = child_text(item, "PartNumber"), child_text(item, "ETag")
        if number is None or not number.strip().isdigit() or etag is None:
            raise S3Error("MalformedXML", "every <Part> needs a numeric <PartNumber> and an <ETag>")
        parts.append((int(number), etag.strip().strip('"')))
    if not parts:
        raise S3Error("MalformedXML", "a CompleteMultipartUpload request lists at least one part")
    return parts
