"""Resources shared by every stage."""

from __future__ import annotations

import dagster as dg

from rlx_assets.config import RlxSettings, load_settings
from rlx_assets.lake.acquire import RetryPolicy
from rlx_assets.lake.sources import LakeSource, source_from_settings
from rlx_assets.staging import DataLayout


class RlxEnvironment(dg.ConfigurableResource):
    """The data root and lake source, read from the `RLX_*` environment at execution time.

    Fields left empty fall back to the environment, so the UI, the CLI and the tests all
    configure the platform the same way.
    """

    data_dir: str | None = None
    lake_uri: str | None = None

    def settings(self) -> RlxSettings:
        overrides = {k: v for k, v in (("data_dir", self.data_dir), ("lake_uri", self.lake_uri)) if v}
        return load_settings().model_copy(update=overrides)

    def layout(self) -> DataLayout:
        return DataLayout(self.settings().data_root)

    def lake_source(self) -> LakeSource:
        return source_from_settings(self.settings())

    def retry_policy(self) -> RetryPolicy:
        s = self.settings()
        return RetryPolicy(s.download_attempts, s.download_backoff_initial_s, s.download_backoff_max_s)
