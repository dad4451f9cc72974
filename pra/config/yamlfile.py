"""Reading a config or study YAML (or JSON) file strictly: a key given twice in one mapping is an error (a
plain YAML loader keeps the later one and silently drops the earlier section), and a syntax error names the file
and line. Values resolve as in yaml.safe_load, the loader Snakemake reads config files with, so that both read a
file alike (`1e-3` is text to both; a float config key accepts it: pra.typed.EXPONENT_FLOAT)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from yaml.constructor import ConstructorError

from pra.typed import ConfigError


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (merge keys `<<` are not keys)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if seen:
                    raise ConstructorError(None, None, f"key {key!r} appears twice in one mapping (first on line "
                                           f"{first[key]}); YAML would keep only the later one", key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _unique_pairs(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"key {twice[0]!r} appears twice in one object; JSON readers keep only the later one")
    return dict(pairs)


def loads(text: str, name: str = "<string>"):
    """The YAML (or JSON) document in `text`, read strictly; a ConfigError naming `name` and the line otherwise.
    Text that is JSON is read as JSON first, as Snakemake reads config files (JSON may hold tabs, YAML not)."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None
    except ValueError:
        pass
    loader = StrictLoader(text)
    loader.name = name  # the marks of its errors name the file
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: not valid YAML: {e}") from None
    finally:
        loader.dispose()


def read(path: str | Path):
    """The YAML document in the file at `path`, read strictly (loads)."""
    path = Path(path)
    return loads(path.read_text(), str(path))
