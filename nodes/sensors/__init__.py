"""The Linux host as an instrument: /proc gauges and hwmon/thermal sensors."""
