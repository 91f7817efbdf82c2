"""The S3 gateway role (``fluxon start s3-gateway``): each export is a bucket, requests are signed with
per-user access keys (AWS Signature V4), and every request runs with the key's user's scopes.

* :mod:`~fluxon_fs.s3_gateway.gateway` — the process: KV client, fs master link, per-user exports, HTTP server;
* :mod:`~fluxon_fs.s3_gateway.app` — the HTTP API: authentication, routing, operations;
* :mod:`~fluxon_fs.s3_gateway.sigv4`, :mod:`~fluxon_fs.s3_gateway.chunked`, :mod:`~fluxon_fs.s3_gateway.credentials`
  — signatures, signed bodies, signing keys from the fs master;
* :mod:`~fluxon_fs.s3_gateway.bucket`, :mod:`~fluxon_fs.s3_gateway.listing`, :mod:`~fluxon_fs.s3_gateway.multipart`,
  :mod:`~fluxon_fs.s3_gateway.keys` — objects on an export;
* :mod:`~fluxon_fs.s3_gateway.xml_bodies`, :mod:`~fluxon_fs.s3_gateway.errors` — S3 XML and error codes.
"""
