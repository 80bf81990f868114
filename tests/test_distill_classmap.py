"""Teacher/student class mapping."""

from __future__ import annotations

import pytest
import torch
import yaml

from detdistill.data.class_map import (SCORING, ClassMapError, build_class_map, describe_scoring, parse_class_map_arg,
                                       spec_from_data)

COCO = yaml.safe_load("{0: person, 1: bicycle, 2: car, 3: motorcycle, 4: airplane, 5: bus, 6: train, 7: truck}")
COCO_NAMES = [COCO[i] for i in range(8)]


def test_identity_when_classes_match():
    cm = build_class_map(COCO_NAMES, COCO_NAMES)
    assert cm.is_identity
    logits = torch.randn(2, 8, 5)
    assert cm.map_logits(logits) is logits


def test_same_count_maps_by_name_never_by_position():
    cm = build_class_map(["car", "bus", "truck"], ["bus", "truck", "car"])
    assert cm.sources == ((1,), (2,), (0,)) and not cm.is_identity
    with pytest.raises(ClassMapError, match=r"\['dog', 'cat'\] match no teacher class"):
        build_class_map(["person", "car"], ["dog", "cat"])


def test_mapping_block_in_data_yaml_must_be_a_mapping():
    with pytest.raises(ClassMapError, match="teacher_classes:.*must map"):
        spec_from_data({"names": ["a"], "teacher_classes": [2, 7]}, teacher_nc=80)


def test_subset_by_name_and_many_to_one_by_spec():
    cm = build_class_map(COCO_NAMES, ["Car", "Bus", "big_vehicle"], {"big_vehicle": ["bus", "truck"]})
    assert cm.sources == ((2,), (5,), (5, 7))
    logits = torch.randn(2, 8, 5)
    mapped = cm.map_logits(logits)
    assert torch.equal(mapped[:, 0], logits[:, 2])
    assert torch.equal(mapped[:, 2], torch.maximum(logits[:, 5], logits[:, 7]))


def test_vehicles_fixture_mapping(vehicles_yaml):
    data = yaml.safe_load(vehicles_yaml.read_text())
    names = [data["names"][i] for i in sorted(data["names"])]
    cm = build_class_map(COCO_NAMES, names, spec_from_data(data, teacher_nc=80))
    assert cm.sources == ((2, 7), (5,), (2,), (3,), (7,))
    assert spec_from_data(data, teacher_nc=20) is None  # coco_classes only applies to an 80-class teacher
    # scored on this dataset, car and truck count as Car and Truck (their sole class), so Ambulance gets nothing
    assert describe_scoring(cm) == "Ambulance <- (none: AP 0); Bus <- bus; Car <- car; Motorcycle <- motorcycle; " \
                                   "Truck <- truck"


def test_unmappable_class_is_a_clear_error():
    with pytest.raises(ClassMapError, match=r"\['Ambulance'\].*--class-map 'Ambulance="):
        build_class_map(COCO_NAMES, ["Car", "Ambulance"])
    with pytest.raises(ClassMapError, match="no class named 'lorry'.*truck"):
        build_class_map(COCO_NAMES, ["Car"], {"Car": "lorry"})
    with pytest.raises(ClassMapError, match="out of range"):
        build_class_map(COCO_NAMES, ["Car"], {0: 99})
    with pytest.raises(ClassMapError, match=r"dataset class\(es\) \['Ambulance'\] match no model class") as error:
        build_class_map(COCO_NAMES, ["Car", "Ambulance"], roles=SCORING)  # scoring a model, not distilling
    assert "teacher" not in str(error.value).replace("teacher_classes", "") and "distil" not in str(error.value)


def test_explicit_empty_mapping_and_cli_parsing():
    spec = parse_class_map_arg("Car=car; Ambulance=")
    cm = build_class_map(COCO_NAMES, ["Car", "Ambulance"], spec)
    assert cm.sources == ((2,), ())
    assert cm.class_mask().tolist() == [True, False]
    assert parse_class_map_arg("0=bus,truck") == {"0": ["bus", "truck"]}
    with pytest.raises(ClassMapError, match="must look like"):
        parse_class_map_arg("Car")
    with pytest.raises(ClassMapError, match="maps student class 'person' twice"):
        parse_class_map_arg("person=person;person=dog")
    with pytest.raises(ClassMapError, match="has no entry"):
        parse_class_map_arg(" ; ")
    # the same class under another case, or by its id, is the same class: refused, not overwritten
    for spec in ({"Car": "car", "car": "truck"}, {"Car": "car", 0: "truck"}, "Car=car;CAR=truck"):
        with pytest.raises(ClassMapError, match=r"maps student class 'Car' twice \(as 'Car' and .*'Car=A,B'"):
            build_class_map(COCO_NAMES, ["Car", "Ambulance"], spec)
    assert build_class_map(COCO_NAMES, ["Car", "Ambulance"], "Car=car;Ambulance=car,truck").sources == ((2,), (2, 7))
    with pytest.raises(ClassMapError, match=r"a class map is a mapping .*; got list"):
        build_class_map(COCO_NAMES, ["Car"], [("Car", "car")])
