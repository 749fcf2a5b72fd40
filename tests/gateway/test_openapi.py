"""docs/openapi.yaml stays in step with the code: every error code the gateway can answer
is documented, and every documented path is routed."""

import re
from pathlib import Path

from django.urls import resolve

from console import api_errors as errors

ROOT = Path(__file__).resolve().parents[2]


def test_every_refusal_is_in_the_api_docs():
    docs = (ROOT / "docs" / "api.md").read_text()
    for refusal in vars(errors).values():
        if isinstance(refusal, errors.Refusal):
            assert f"| {refusal.status} | {refusal.code} |" in docs or refusal is errors.METHOD, (
                refusal
            )


def test_every_documented_path_resolves():
    spec = (ROOT / "docs" / "openapi.yaml").read_text()
    paths = re.findall(r"^  (/[^:]+):$", spec, re.M)
    assert paths
    for path in paths:
        resolve(path)
