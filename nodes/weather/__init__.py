"""An archive node: a directory of weather-station files, one file a day."""
