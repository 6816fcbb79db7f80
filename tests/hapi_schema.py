"""JSON Schemas of the HAPI 3.3 responses, written from the specification's text
(§3.3 about, §3.4 capabilities, §3.5 catalog, §3.6 info, §4.1 status, §3.7.6
time format), for the `jsonschema` package to validate the server's answers.

Only what the specification states is checked: required keys, types, allowed
values, that custom keys start with `x_`, and the per-type rules of parameter
objects (length for string/isotime only, size for arrays, fill a string or
null, units not an empty string, the first parameter an isotime with fill null).
"""

from __future__ import annotations

# Restricted ISO 8601 (§3.7.6): yyyy-mm-ddThh:mm:ss.sssZ or yyyy-dddThh:mm:ss.sssZ,
# truncated from the end, trailing Z required on outgoing times.
HAPI_TIME = (
    r"^[0-9]{4}(-([0-9]{3}|[0-9]{2}(-[0-9]{2})?))?"
    r"(T[0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?)?Z$"
)
ISO_DURATION = (
    r"^P(?=[0-9T])([0-9]+Y)?([0-9]+M)?([0-9]+D)?(T(?=[0-9])([0-9]+H)?([0-9]+M)?([0-9.]+S)?)?$"
)

STATUS = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "enum": [1200, 1201]},
        "message": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
}
ERROR_STATUS = {
    **STATUS,
    "properties": {
        "code": {"type": "integer", "minimum": 1400, "maximum": 1599},
        "message": {"type": "string", "minLength": 1},
    },
}
EXTENSIONS = {"^x_": {}}

ABOUT = {
    "type": "object",
    "required": ["HAPI", "status", "id", "title", "contact"],
    "properties": {
        "HAPI": {"const": "3.3"},
        "status": STATUS,
        "id": {"type": "string", "minLength": 1},
        "title": {"type": "string", "minLength": 1},
        "contact": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "contactID": {"type": "string"},
        "resourceID": {"type": "string"},
        "serverCitation": {"type": "string"},
        "note": {"type": ["string", "array"], "items": {"type": "string"}},
        "warning": {"type": ["string", "array"], "items": {"type": "string"}},
    },
    "patternProperties": EXTENSIONS,
    "additionalProperties": False,
}

CAPABILITIES = {
    "type": "object",
    "required": ["HAPI", "status", "outputFormats"],
    "properties": {
        "HAPI": {"const": "3.3"},
        "status": STATUS,
        "outputFormats": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "contains": {"const": "csv"},  # every server must support csv
            "items": {"anyOf": [{"enum": ["csv", "binary", "json"]}, {"pattern": "^x_"}]},
        },
        "catalogDepthOptions": {
            "type": "array",
            "items": {"enum": ["dataset", "all"]},
            "uniqueItems": True,
        },
    },
    "patternProperties": EXTENSIONS,
    "additionalProperties": False,
}

# §8.2: ids and parameter names are non-control Unicode without a comma.
NAME = {"type": "string", "minLength": 1, "pattern": "^[^,\\u0000-\\u001f]+$"}

BINS = {
    "type": "object",
    "required": ["name", "units"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "units": {"type": ["string", "null"]},
        "centers": {"type": ["array", "string", "null"], "items": {"type": "number"}},
        "ranges": {
            "type": ["array", "string"],
            "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        },
        "label": {"type": "string"},
        "description": {"type": "string"},
    },
    "anyOf": [{"required": ["centers"]}, {"required": ["ranges"]}],
    "patternProperties": EXTENSIONS,
    "additionalProperties": False,
}

UNITS = {
    "anyOf": [
        {"type": "null"},
        {"type": "string", "minLength": 1},  # "an empty string is not allowed"
        {"type": "array", "items": {"type": ["string", "null", "array"]}},
    ]
}

PARAMETER = {
    "type": "object",
    "required": ["name", "type", "units", "fill"],
    "properties": {
        "name": NAME,
        "type": {"enum": ["string", "double", "integer", "isotime"]},
        "length": {"type": "integer", "minimum": 1},
        "size": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
        "units": UNITS,
        "fill": {"type": ["string", "null"]},
        "description": {"type": "string"},
        "label": {"type": ["string", "array"]},
        "stringType": {"type": ["string", "object"]},
        "coordinateSystemName": {"type": "string"},
        "vectorComponents": {"type": ["string", "array"]},
        "bins": {"type": "array", "items": BINS},
    },
    "allOf": [
        # length: required for string and isotime, not allowed for others
        {
            "if": {"properties": {"type": {"enum": ["string", "isotime"]}}},
            "then": {"required": ["length"]},
            "else": {"not": {"required": ["length"]}},
        },
        # numeric fills are strings of numbers (or NaN for doubles)
        {
            "if": {"properties": {"type": {"const": "integer"}}},
            "then": {"properties": {"fill": {"type": ["string", "null"], "pattern": "^-?[0-9]+$"}}},
        },
        {
            "if": {"properties": {"type": {"const": "double"}}},
            "then": {
                "properties": {
                    "fill": {
                        "type": ["string", "null"],
                        "pattern": "^(NaN|[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?)$",
                    }
                }
            },
        },
        # bins: one object per dimension of size
        {"if": {"required": ["bins"]}, "then": {"required": ["size"]}},
    ],
    "patternProperties": EXTENSIONS,
    "additionalProperties": False,
}

TIME_PARAMETER = {
    "type": "object",
    "required": ["name", "type", "units", "fill", "length"],
    "properties": {
        "type": {"const": "isotime"},
        "units": {"const": "UTC"},
        "fill": {"type": "null"},  # the primary time column never holds fills
    },
}

INFO_BODY = {
    "type": "object",
    "required": ["parameters", "startDate", "stopDate"],
    "properties": {
        "format": {"enum": ["csv", "binary", "json"]},
        "parameters": {
            "type": "array",
            "minItems": 1,
            "items": PARAMETER,
            "prefixItems": [TIME_PARAMETER],
        },
        "startDate": {"type": "string", "pattern": HAPI_TIME},
        "stopDate": {"type": "string", "pattern": HAPI_TIME},
        "timeStampLocation": {"enum": ["begin", "center", "end", "other"]},
        "cadence": {"type": "string", "pattern": ISO_DURATION},
        "sampleStartDate": {"type": "string", "pattern": HAPI_TIME},
        "sampleStopDate": {"type": "string", "pattern": HAPI_TIME},
        "maxRequestDuration": {"type": "string", "pattern": ISO_DURATION},
        "description": {"type": "string"},
        "unitsSchema": {"type": "string"},
        "coordinateSystemSchema": {"type": ["string", "object"]},
        "location": {"type": "object"},
        "geoLocation": {"type": "array", "items": {"type": "number"}},
        "resourceURL": {"type": "string"},
        "resourceID": {"type": "string"},
        "creationDate": {"type": "string", "pattern": HAPI_TIME},
        "datasetCitation": {"type": "string"},
        "licenseURL": {"type": ["string", "array"]},
        "provenance": {"type": "string"},
        "modificationDate": {"type": "string", "pattern": HAPI_TIME},
        "contact": {"type": "string"},
        "contactID": {"type": "string"},
        "additionalMetadata": {"type": "array"},
        "definitions": {"type": "object"},
        "note": {"type": ["string", "array"]},
        "warning": {"type": ["string", "array"]},
    },
    # sampleStartDate and sampleStopDate come together
    "dependentRequired": {
        "sampleStartDate": ["sampleStopDate"],
        "sampleStopDate": ["sampleStartDate"],
    },
    "patternProperties": EXTENSIONS,
    "additionalProperties": False,
}

INFO = {
    **INFO_BODY,
    "required": ["HAPI", "status", *INFO_BODY["required"]],
    "properties": {"HAPI": {"const": "3.3"}, "status": STATUS, **INFO_BODY["properties"]},
}

CATALOG = {
    "type": "object",
    "required": ["HAPI", "status", "catalog"],
    "properties": {
        "HAPI": {"const": "3.3"},
        "status": STATUS,
        "catalog": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id"],
                "properties": {
                    "id": NAME,
                    "title": {"type": "string"},
                    # depth=all: the info document without HAPI and status
                    "info": INFO_BODY,
                },
                "patternProperties": EXTENSIONS,
                "additionalProperties": False,
            },
        },
    },
    "patternProperties": EXTENSIONS,
    "additionalProperties": False,
}

ERROR = {
    "type": "object",
    "required": ["HAPI", "status"],
    "properties": {"HAPI": {"const": "3.3"}, "status": ERROR_STATUS},
    "additionalProperties": False,
}


def validate(document: object, schema: dict) -> None:
    """Raise jsonschema.ValidationError unless `document` follows `schema`."""
    import jsonschema

    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(document)
