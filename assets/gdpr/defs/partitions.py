"""The bounded partitioning of the whole user base for GDPR bulk work: user-id hash buckets.

A bucket is `assets.gdpr.bulk.user_bucket(user_id)` (first 32 bits of MD5, mod
BUCKET_COUNT), which PostgreSQL computes in the query that lists a bucket's users. The
count is fixed: partition keys must not change under a backfill, and 64 buckets of a
20,000-user base are about 300 users each, a few seconds of work to watch and retry.
"""

import dagster as dg

from assets.gdpr.bulk import BUCKET_COUNT


def bucket_key(bucket: int) -> str:
    return f"{bucket:02d}"


gdpr_bucket_partitions = dg.StaticPartitionsDefinition([bucket_key(b) for b in range(BUCKET_COUNT)])
