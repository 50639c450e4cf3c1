"""The "Your data" portal: pages under `/portal` served by `goalport serve`, on the API's
own functions (see `portal.routes`)."""
