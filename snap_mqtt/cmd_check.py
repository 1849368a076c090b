"""`snap-mqtt check`: validate the config, load the model, connect to the broker and look at the
input, then say plainly what is wrong. Never prints a password."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from snap_mqtt.settings import add_common_arguments

    parser.add_argument("--device", dest="audio.device", metavar="NAME|INDEX", help="input device to check")
    parser.add_argument("--input", metavar="FILE", help="check this audio file instead of an input device")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the broker (5)")
    parser.add_argument("--show-config", action="store_true", help="print the effective settings (password hidden)")
    add_common_arguments(parser, mqtt=True)


def _line(ok: bool, what: str, text: str) -> None:
    print(f"[{'ok' if ok else 'FAIL'}] {what}: {text}")


def run(args: argparse.Namespace) -> int:
    from snap_mqtt.settings import SettingsError, load_from_args

    failures = 0
    try:
        settings = load_from_args(args, extra_keys=("audio.device",))
    except SettingsError as exc:
        _line(False, "config", f"{len(exc.problems)} problem(s)")
        for p in exc.problems:
            print(f"       {p}")
        return 1
    _line(True, "config", f"node {settings.node_id!r}, topics {settings.base_topic}/{settings.node_id}/..., "
                          f"broker {settings.mqtt.host}:{settings.mqtt.port}"
                          f"{', user ' + repr(settings.mqtt.username) if settings.mqtt.username else ''}"
                          f"{', password set' if settings.mqtt.password else ''}")
    if args.show_config:
        print(json.dumps(settings.redacted(), indent=2, default=str))

    import torch

    torch.set_num_threads(1)
    from snap_mqtt.model_file import ModelFileError, load_model
    from snap_mqtt.pipeline import SnapPipeline

    model = None
    try:
        model = load_model(settings.resolved_model_path())
        m = model.metadata
        # the bars as the listener's own detector resolves them (settings over the model's metadata)
        det = SnapPipeline(model, settings).detector
        second = f"{det.follow_threshold:.2f}" if det.floor < det.threshold else "off"
        _line(True, "model", f"{model.path} (trainer {m.trainer_version}, {m.sample_rate} Hz, "
                             f"window {m.window_samples}, hop {m.hop_samples}, threshold {det.threshold:.2f}, "
                             f"2nd/3rd snap of a gesture {second})")
    except ModelFileError as exc:
        failures += 1
        _line(False, "model", str(exc))

    from snap_mqtt.listener import mqtt_options
    from snap_mqtt.mqtt_client import probe_broker

    ok, text = probe_broker(mqtt_options(settings), timeout=args.timeout)
    failures += not ok
    _line(ok, "broker", text)

    if args.input:
        from snap_mqtt.file_source import FileSource
        from snap_mqtt.audio_io import AudioFileError
        from snap_mqtt.capture import BlockQueue

        try:
            src = FileSource(args.input, BlockQueue())
            _line(True, "input", f"{args.input}: {src.seconds:.1f} s at {src.sample_rate} Hz, {src.channels} channel(s)")
        except AudioFileError as exc:
            failures += 1
            _line(False, "input", str(exc))
    else:
        failures += not _check_device(settings, model)
    print("all good" if not failures else f"{failures} problem(s) found")
    return 0 if not failures else 1


def _check_device(settings, model) -> bool:
    try:
        import sounddevice as sd
    except OSError as exc:
        _line(False, "input", f"PortAudio is not available ({exc}); install libportaudio2")
        return False
    from snap_mqtt.capture import AudioDeviceError, choose_format, input_devices, resolve_device

    try:
        devices = input_devices()
        if not devices:
            _line(False, "input", "no audio input devices found (microphone plugged in? PulseAudio running?)")
            return False
        idx = resolve_device(settings.audio.device)
        rate, ch = choose_format(idx, model.metadata.sample_rate if model else 16000, settings.audio.channels,
                                 settings.audio.sample_rate)
        name = sd.query_devices(idx, "input")["name"]
        _line(True, "input", f"{name!r} can capture {ch} channel(s) at {rate} Hz"
                             f"{'' if model is None or rate == model.metadata.sample_rate else ' (resampled to the model rate)'}")
        return True
    except AudioDeviceError as exc:
        _line(False, "input", str(exc))
    except Exception as exc:  # PortAudioError
        _line(False, "input", f"PortAudio: {exc}")
    return False
