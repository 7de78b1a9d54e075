import types

import durian


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(durian).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert len(durian.__all__) == len(set(durian.__all__))
    assert set(durian.__all__) == public  # ruff (RUF022) keeps the order sorted
