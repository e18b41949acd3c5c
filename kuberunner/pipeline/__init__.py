"""A whole pipeline of a local .gitlab-ci.yml: `plan` decides (pure) which jobs run, in what order and
how; `scheduler` runs them as asyncio tasks; `output` shows them on one terminal."""
