"""Google Cloud adapters for distributed mode: the TaskQueue on Pub/Sub, the BlobStore on GCS.

Both honour the emulator variables Google's clients read (``PUBSUB_EMULATOR_HOST``,
``STORAGE_EMULATOR_HOST``): set, they talk to the emulator without credentials.
"""

from backends.gcp.gcs import GcsBlobStore, make_storage_client
from backends.gcp.pubsub import PubSubTaskQueue

__all__ = ["GcsBlobStore", "PubSubTaskQueue", "make_storage_client"]
