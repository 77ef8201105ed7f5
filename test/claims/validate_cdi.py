#!/usr/bin/python3
"""validate_cdi.py SCHEMA_DIR SPEC.json...: validates CDI spec files against the CDI JSON schema
(draft-07, schema.json + defs.json side by side). Prints one line per problem; exit 1 if any."""
import json, os, sys

import jsonschema

schema_dir = sys.argv[1]
with open(os.path.join(schema_dir, "schema.json")) as f:
    schema = json.load(f)
with open(os.path.join(schema_dir, "defs.json")) as f:
    defs = json.load(f)
resolver = jsonschema.RefResolver(base_uri="file://" + schema_dir + "/", referrer=schema,
                                  store={"defs.json": defs, "file://" + schema_dir + "/defs.json": defs})
validator = jsonschema.Draft7Validator(schema, resolver=resolver)
bad = 0
for path in sys.argv[2:]:
    with open(path) as f:
        spec = json.load(f)
    for error in validator.iter_errors(spec):
        bad += 1
        print("%s: %s at %s" % (path, error.message, "/".join(str(p) for p in error.path)))
sys.exit(1 if bad else 0)
