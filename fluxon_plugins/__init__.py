"""Default plugins of Fluxon, each registered through the ``fluxon.plugins`` entry points."""
