"""Resources shared by every stage."""

import dagster as dg

from rlx_assets.config import RlxSettings, load_settings
from rlx_assets.defs.recovery import write_for_run
from rlx_assets.lake.configured_source import source_from_settings
from rlx_assets.lake.sources import LakeSource
from rlx_assets.retry import RetryPolicy
from rlx_assets.staging import DataLayout, open_layout
from rlx_assets.temp_files import own_temp_files


class RlxEnvironment(dg.ConfigurableResource):
    """The data root and lake source, read from the `RLX_*` environment at execution time.

    Fields left empty fall back to the environment, so the UI, the CLI and the tests all
    configure the platform the same way.
    """

    data_dir: str | None = None
    lake_uri: str | None = None
    gate_profile: str | None = None
    capture_dir: str | None = None

    def settings(self) -> RlxSettings:
        fields = {
            "data_dir": self.data_dir,
            "lake_uri": self.lake_uri,
            "gate_profile": self.gate_profile,
            "capture_dir": self.capture_dir,
        }
        settings = load_settings()
        return settings.model_validate(
            {**settings.model_dump(), **{k: v for k, v in fields.items() if v}}
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # In a run's step: its temporary files carry the run id, and the run records the data
        # root, so crash recovery can remove what the step left if the run dies.
        if context.run is not None and context.instance is not None:
            write_for_run(context.instance, context.run.run_id, self.settings().data_root)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        own_temp_files(None)

    def layout(self) -> DataLayout:
        return open_layout(self.settings())

    def lake_source(self) -> LakeSource:
        return source_from_settings(self.settings())

    def retry_policy(self) -> RetryPolicy:
        return self.settings().retry_policy()
