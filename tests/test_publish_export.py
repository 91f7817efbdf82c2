"""publish_export / unpublish_export: serving an export from a Python process, through the fs master."""

from __future__ import annotations

from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.paths import CONFIG_PATH
from fluxon_py.fluxon_fs import FluxonFsPatcher, publish_export, unpublish_export
from tests.support.fs_cluster import ADMIN, MASTER_KEY, fs_cluster


def test_published_export_is_mountable_and_leaves_the_snapshot_when_unpublished(tmp_path):
    with fs_cluster() as fs:
        fs.start_master()
        export_dir = fs.export_dir("pub")
        (export_dir / "x.txt").write_text("published")
        writer = fs.kv.external("writer-1", "h1")
        agent = publish_export(
            writer, "pub", str(export_dir), master_instance_key=MASTER_KEY, service_secret_file=fs.service_secret_file
        )
        link = FsMasterLink(writer, MASTER_KEY)
        assert "pub" in link.call(CONFIG_PATH, {})["exports"]

        reader = fs.kv.external("reader-1", "h1")
        patcher = FluxonFsPatcher(reader)
        patcher.set_master_config_yaml(f"fluxon_fs: {{master: {{instance_key: {MASTER_KEY}}}}}")
        patcher.set_cache_config_yaml(f"fluxon_fs: {{master: {{instance_key: {MASTER_KEY}}}}}")
        patcher.set_request_identity(*ADMIN)
        patcher.install()
        try:
            patcher.mount_remote_dir(local_mount_dir_abs=str(tmp_path / "mnt"), export_name="pub")
            with open(tmp_path / "mnt" / "x.txt") as handle:
                assert handle.read() == "published"
        finally:
            patcher.uninstall()
        unpublish_export(agent)
        assert "pub" not in link.call(CONFIG_PATH, {})["exports"]
