"""A workflow file: YAML with source positions (:mod:`.document`), the JSON Schema check (:mod:`.schema`), frozen
typed records with defaults applied (:mod:`.build`, :mod:`.records`), and a run's inputs (:mod:`.inputs`).
Pure: no asyncio, no network."""
