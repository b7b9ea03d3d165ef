"""Statistics of a ``Scene8`` object: values with what they measure, in one tidy table.

``StatisticsValue`` (ID_Time, ID_Object, ID_StatisticsType, Value) holds the values (-1: not
tied to a time point or object); ``StatisticsType`` (ID, ID_Category, ID_FactorList, Name, Unit)
says what each is; ``Category`` (ID, CategoryName, Name) what it describes (Overall, Track,
Spot); ``Factor`` (ID_List, Name, Level) its qualifiers (ID_FactorList 0: none).
``StatisticsValueTimeOffset`` indexes the values by time and is checked against them.

The tables are the same in every ``Scene8`` object group that has them (``Points``,
``MegaSurfaces``, ``Cells``, ``Filaments``...). Imaris writes values only for objects the group
holds: where the caller knows the group's object ids (spots, surfaces and their tracks), a value
naming any other object is refused.
"""

from __future__ import annotations

import numpy as np

from .groups import ObjectGroup
from .model import Statistics

__all__ = ["read_statistics", "statistics_count"]

_VALUE = {"ID_Time": "int", "ID_Object": "int", "ID_StatisticsType": "int", "Value": "float"}
_TYPE = {"ID": "int", "ID_Category": "int", "ID_FactorList": "int", "Name": "text", "Unit": "text"}
_CATEGORY = {"ID": "int", "Name": "text"}
_FACTOR = {"ID_List": "int", "Name": "text", "Level": "text"}
_OFFSET = {"ID": "int", "IndexBegin": "int", "IndexEnd": "int"}


def statistics_count(group: ObjectGroup) -> int:
    """How many values ``StatisticsValue`` holds (0 without one)."""
    return group.rows("StatisticsValue") if group.has("StatisticsValue") else 0


def read_statistics(group: ObjectGroup, timepoints: int, object_ids: np.ndarray | None = None) -> Statistics:
    """The group's statistics values with what each measures; ``object_ids``, where given, are
    the ids a value may name besides -1 (none)."""
    values = group.table("StatisticsValue", _VALUE, optional=True)
    if values is None:
        return Statistics.empty()
    types = group.table("StatisticsType", _TYPE)
    categories = group.table("Category", _CATEGORY, optional=True) or {"ID": np.zeros(0, np.int64), "Name": []}
    factors = group.table("Factor", _FACTOR, optional=True) or {
        "ID_List": np.zeros(0, np.int64),
        "Name": [],
        "Level": [],
    }
    assert types is not None
    t = values["ID_Time"]
    group.time_indices("StatisticsValue", t, timepoints, none_allowed=True)
    _check_time_offsets(group, t)
    if object_ids is not None:
        objects = values["ID_Object"]
        unknown = (objects != -1) & ~np.isin(objects, object_ids)
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise group.error(
                f"StatisticsValue row {row} is a value of object {int(objects[row])}, which the group does not hold"
            )

    category_name = dict(zip(categories["ID"].tolist(), categories["Name"], strict=True))
    factor_lists: dict[int, dict[str, str]] = {}
    for list_id, name, level in zip(factors["ID_List"].tolist(), factors["Name"], factors["Level"], strict=True):
        factor_lists.setdefault(list_id, {})[name] = level
    described: dict[int, tuple[str, str, str, dict[str, str]]] = {}
    for type_id, category, factor_list, name, unit in zip(
        types["ID"].tolist(),
        types["ID_Category"].tolist(),
        types["ID_FactorList"].tolist(),
        types["Name"],
        types["Unit"],
        strict=True,
    ):
        if type_id in described:
            raise group.error(f"StatisticsType holds ID {type_id} more than once")
        if category not in category_name:
            raise group.error(f"StatisticsType {name!r} names category {category}, which is not in Category")
        if factor_list != 0 and factor_list not in factor_lists:
            raise group.error(f"StatisticsType {name!r} names factor list {factor_list}, which is not in Factor")
        described[type_id] = (name, unit, category_name[category], factor_lists.get(factor_list, {}))

    kinds = values["ID_StatisticsType"].tolist()
    unknown = [k for k in set(kinds) if k not in described]
    if unknown:
        raise group.error(f"StatisticsValue names statistic type {min(unknown)}, which is not in StatisticsType")
    rows = [described[k] for k in kinds]
    return Statistics(
        name=[r[0] for r in rows],
        unit=[r[1] for r in rows],
        category=[r[2] for r in rows],
        factors=[dict(r[3]) for r in rows],
        object_id=values["ID_Object"],
        t=t,
        value=values["Value"],
    )


def _check_time_offsets(group: ObjectGroup, t: np.ndarray) -> None:
    """``StatisticsValueTimeOffset``, where present, must index the values by their own time."""
    offsets = group.table("StatisticsValueTimeOffset", _OFFSET, optional=True)
    if offsets is None:
        return
    group.index_ranges(
        "StatisticsValueTimeOffset", offsets["IndexBegin"], offsets["IndexEnd"], len(t), "StatisticsValue"
    )
    for time, b, e in zip(
        offsets["ID"].tolist(), offsets["IndexBegin"].tolist(), offsets["IndexEnd"].tolist(), strict=True
    ):
        if (t[b:e] != time).any():
            raise group.error(f"StatisticsValueTimeOffset gives rows [{b}, {e}) time {time}, but their ID_Time differs")
