"""How the load test's readers fetch, for every reader to share (the audit and locust's watcher).

The embedded broker (Tansu) lists every batch of a partition on each fetch that finds data, and
gives up that listing when the fetch's max wait runs out: with the 5 ms the workers use, a topic
of 100,000 small batches returned nothing in 120 s; with 500 ms it was read whole in 1.5 s
(docs/stack-notes.md has the trap, docs/benchmarks.md the figures). A reader that needs every record, not
each one at once, waits long and takes much per fetch."""

READ_FETCH_WAIT_MS = 500
READ_FETCH_BYTES = 64 * 1024 * 1024
