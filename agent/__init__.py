"""The agent: wiring. `cli` and `commands/` face the user; `loop` ticks sources -> observe ->
qos (the brain) -> act -> report, with `config`, `errors`, `inputs` (the bounded reader of
every input file) and `tick` (the tick's records) shared by every room; `cluster` wires the
Kubernetes side; `policy/` is ColocationPolicy.
"""
