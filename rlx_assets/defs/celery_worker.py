"""The Celery app of a worker, built from the same `RLX_CELERY_*` variables as the executor:

    celery -A rlx_assets.defs.celery_worker worker -Q dagster --concurrency 1 -n w1@%h

(README "Scaling out"). Importing it without `RLX_CELERY_BROKER` fails naming the variable.
"""

from rlx_assets.config import load_settings
from rlx_assets.defs.celery_executor import celery_worker_app

app = celery_worker_app(load_settings())
