"""The single-host demo stack shared by ``examples/start_kv_and_fs_svc.py`` and ``fluxon demo``."""
