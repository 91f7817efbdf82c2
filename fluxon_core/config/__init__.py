"""Strict YAML config loading into frozen attrs classes.

See :mod:`fluxon_core.config.loader` for the rules and :mod:`fluxon_core.config.fields` for how a
config class declares its fields.
"""

from fluxon_core.config.backend import BackendConfig
from fluxon_core.config.errors import ConfigError, ConfigTypeError
from fluxon_core.config.fields import config_field
from fluxon_core.config.loader import (
    dump_config,
    load_backend_block,
    load_config,
    load_yaml_file,
    load_yaml_text,
    parse_yaml_text,
    read_yaml_file,
)
from fluxon_core.config.units import ByteSize, parse_byte_size

__all__ = [
    "BackendConfig",
    "ByteSize",
    "ConfigError",
    "ConfigTypeError",
    "config_field",
    "dump_config",
    "load_backend_block",
    "load_config",
    "load_yaml_file",
    "load_yaml_text",
    "parse_byte_size",
    "parse_yaml_text",
    "read_yaml_file",
]
