"""Reading a config or study YAML file strictly: a key given twice in one mapping is an error (a plain YAML
loader keeps the later one and silently drops the earlier section), a syntax error names the file and line,
and exponent floats without a dot (`1e-3`, `5e4`) are floats, as in YAML 1.2 (PyYAML follows YAML 1.1 and
reads them as text)."""
from __future__ import annotations

from pathlib import Path

import yaml
from yaml.constructor import ConstructorError

from pra.typed import EXPONENT_FLOAT, ConfigError


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys and reads exponent floats as floats."""

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


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789"))


def loads(text: str, name: str = "<string>"):
    """The YAML document in `text`, read strictly; a ConfigError naming `name` and the line otherwise."""
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
