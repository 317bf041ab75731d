"""YAML in and out of the API, for config documents ("Edit as YAML" over HTTP)."""
from __future__ import annotations

import yaml
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        text = stream.read().decode((parser_context or {}).get("encoding") or "utf-8")
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ParseError(f"Not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        return {"yaml": text}


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, str):
            return data.encode()
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).encode()
