"""Config validation: every mistake gets an error that names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workcell.assembly.config import load_config, parse_config
from workcell.errors import ConfigError


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "test.yaml")
    return str(exc.value)


def test_embedded_config_is_valid_and_fully_simulated() -> None:
    cfg = load_config()
    assert cfg.simulated
    assert {d.kind for d in cfg.devices.values()} == {
        "liquid_handler",
        "incubator",
        "cell_counter",
        "imager",
    }


def test_configs_sim_yaml_is_the_embedded_config() -> None:
    shipped = Path(__file__).parents[1] / "configs" / "sim.yaml"
    assert load_config(shipped) == load_config()


def test_unknown_driver_names_the_device(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["incubator"]["driver"] = "liconic-magic"
    msg = _error(sim_data)
    assert "devices.incubator" in msg
    assert "liconic-magic" in msg


def test_missing_port_names_the_field(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["incubator"] = {"kind": "incubator", "driver": "cytomat"}
    msg = _error(sim_data)
    assert "devices.incubator.port: Field required" in msg


def test_two_devices_on_one_port(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["incubator"] = {
        "kind": "incubator",
        "driver": "cytomat",
        "port": "/dev/ttyUSB0",
    }
    sim_data["devices"]["hotel"] = {
        "kind": "incubator",
        "driver": "cytomat",
        "port": "/dev/ttyUSB0",
    }
    msg = _error(sim_data)
    assert "two devices on one port" in msg
    assert "/dev/ttyUSB0" in msg and "hotel" in msg and "incubator" in msg


def test_two_resources_on_one_carrier_site(sim_data: dict[str, Any]) -> None:
    sites = sim_data["deck"]["carriers"][1]["sites"]
    sites[1]["site"] = 0
    msg = _error(sim_data)
    assert "two resources on one deck spot" in msg
    assert "'plate_1'" in msg and "'plate_2'" in msg
    assert "deck.carriers.1" in msg


def test_overlapping_carriers(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["rails"] = 4  # tip carrier occupies rails 1-6
    msg = _error(sim_data)
    assert "two resources on one deck spot" in msg
    assert "'plate_carrier'" in msg and "'tip_carrier'" in msg


def test_unknown_labware_names_the_field(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][0]["labware"] = "my_favourite_6_well"
    msg = _error(sim_data)
    assert "deck.carriers.1.sites.0.labware" in msg
    assert "unknown labware 'my_favourite_6_well'" in msg


def test_carrier_is_not_labware(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][0]["labware"] = "PLT_CAR_L5AC_A00"
    assert "unknown labware" in _error(sim_data)


def test_unknown_carrier(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][0]["type"] = "TIP_CAR_9000"
    msg = _error(sim_data)
    assert "deck.carriers.0.type" in msg and "TIP_CAR_9000" in msg


def test_site_beyond_carrier(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][0]["site"] = 7
    assert "has sites 0-4" in _error(sim_data)


def test_carrier_off_the_deck(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][3]["rails"] = 30
    assert "STARLetDeck has 1-30" in _error(sim_data)


def test_unknown_key_is_an_error(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["counter"]["baud"] = 9600
    msg = _error(sim_data)
    assert "devices.counter.baud" in msg


def test_missing_device_kind(sim_data: dict[str, Any]) -> None:
    del sim_data["devices"]["imager"]
    assert "no imager configured" in _error(sim_data)


def test_duplicate_resource_name(sim_data: dict[str, Any]) -> None:
    sim_data["deck"]["carriers"][1]["sites"][1]["name"] = "plate_1"
    assert "'plate_1' is used twice" in _error(sim_data)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
