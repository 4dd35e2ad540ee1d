"""Resources shared by every stage."""

import dagster as dg

from rlx_assets.config import RlxSettings, load_settings
from rlx_assets.lake.configured_source import source_from_settings
from rlx_assets.lake.sources import LakeSource
from rlx_assets.retry import RetryPolicy
from rlx_assets.staging import DataLayout, open_layout


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

    def layout(self) -> DataLayout:
        return open_layout(self.settings())

    def lake_source(self) -> LakeSource:
        return source_from_settings(self.settings())

    def retry_policy(self) -> RetryPolicy:
        return self.settings().retry_policy()
