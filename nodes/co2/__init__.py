"""CO2 observation units: an HTTP server speaking the units' firmware protocol.

Pure protocol modules (no I/O): `paths` (unit ids, upload paths), `query`
(query strings), `upload` (push-sequential decisions), `readings` (readings TSV
rows), `pings` (ping values and their TSV lines), `routes` (URL routing).
I/O: `tokens` (per-unit token file), `storage` (files with fsync, SQLite),
`ingest` (readings files parsed as they grow), `server` (twisted.web),
`simulator` (units that behave like the firmware), `admin` (operator commands).
"""
