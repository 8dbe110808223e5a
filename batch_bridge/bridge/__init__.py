"""The bridge graph, one concern a module.

- `state`: the graph's input and state (a summary, never payloads)
- `graph`: the compiled graph; hands each tick the server's store, client and clock
- `tick`: a run: marker, upkeep, passes, and when to run next
- `passes`: a pass: what is due, in what order (script mode takes passes too)
- `intake`: queued items to batches, with the owner check; `flush`: the pure flush rule
- `batches`: a batch's life cycle: form, submit, poll, finish, release, give up
- `finish`: a finished batch's results recorded and handed on, a page of threads at a time
- `deliver`: confirmed, exactly-once resumes of caller threads
- `upkeep`: tick marker, safety cron, orphan sweep, purge
- `calls`: calling the user's provider functions, bounded in time and number
- `local`: script mode, the same passes over an in-process store, results to futures
"""
