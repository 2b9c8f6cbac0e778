"""The OpenAPI document: valid OpenAPI 3.1, and exactly the routes the worker's web server serves."""

from __future__ import annotations

import msgspec
import schemathesis
from openapi_spec_validator import validate

from dispatcher import models
from dispatcher.http import OPEN_PATHS
from dispatcher.openapi import ERRORS, document


def test_the_document_is_valid_openapi_3_1_and_schemathesis_reads_every_operation():
    spec = document()
    validate(spec)
    operations = list(schemathesis.openapi.from_dict(spec).get_all_operations())
    assert operations and all(operation.ok() for operation in operations)
    assert len(operations) == sum(method != "parameters" for path in spec["paths"].values() for method in path)


def test_every_route_the_web_server_registers_is_documented_and_nothing_else():
    from dispatcher import views  # noqa: F401 - importing registers the HTTP views
    from dispatcher.app import app

    # Apply what a starting worker applies too (faust's own blueprints), so none hides from this.
    app.web.init_server()
    routes = {(route.method, route.resource.canonical) for route in app.web.web_app.router.routes()}
    documented = {(method.upper(), path) for path, item in document()["paths"].items() for method in item
                  if method != "parameters"}
    # faust serves HEAD on every view, as GET without the body where there is a GET and 405 where
    # there is none: HTTP's HEAD, covered by the GET the document describes.
    assert {route for route in routes if route[0] != "HEAD"} == documented
    assert {path for method, path in routes if method == "HEAD"} == {path for _, path in documented}


def test_request_bodies_are_the_models_themselves():
    schemas = document()["components"]["schemas"]
    for model in (models.Lead, models.RepProfile, models.PresenceChange, models.CloseRequest, models.ReassignRequest):
        declared = msgspec.json.schema_components([model])[1][model.__name__]
        assert set(schemas[model.__name__]["properties"]) == set(declared["properties"])
        assert schemas[model.__name__].get("required", []) == declared.get("required", [])
    attribute = schemas["Lead"]["properties"]["attributes"]["additionalProperties"]["anyOf"][1]
    assert (attribute["minimum"], attribute["maximum"]) == (-(2**63), 2**63 - 1)


def patterns(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if "pattern" in node else []
        return own + [p for value in node.values() for p in patterns(value)]
    return [p for value in node for p in patterns(value)] if isinstance(node, list) else []


def test_patterns_are_the_models_own_in_ecma_262():
    """JSON Schema patterns are ECMA-262, where `$` ends the text and \\Z means nothing; the models
    say \\Z because Python's `$` would also match before a final newline."""
    found = set(patterns(document()))
    assert found == {pattern.removesuffix("\\Z") + "$" for pattern in (models.ID_PATTERN, models.NAME_PATTERN,
                                                                             models.WINDOW_PATTERN)}


def test_every_guarded_operation_documents_the_error_shape_and_the_auth_refusals():
    spec = document()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or operation.get("security") == []:
                continue
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= set(operation["responses"]), (method, path)
    for status in ERRORS:
        schema = spec["components"]["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    open_paths = {path for path, item in spec["paths"].items() if item.get("get", {}).get("security") == []}
    assert open_paths == set(OPEN_PATHS)
