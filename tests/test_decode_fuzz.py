"""Corrupt segments never crash the classifier: a seeded fuzz run over real H.264 MPEG-TS segments.

Variants of segments written by `livewatch.testing.media` (bit flips, zeroed byte ranges,
truncation, two segments or two encodes spliced, shuffled or dropped 188-byte TS packets) go
through the classifier's own decode-and-describe path (`i3d_classifier.prepare` and `describe`)
and the daemon's `classify_segment`, with a stand-in for the network (the network is not what is
fuzzed). Every variant gives exactly one detection or one error detection, in words: never a
traceback, never "classifier failed". Damaged frames are concealed and reported.
"""
import io
import logging
import random
from pathlib import Path

import av
import numpy as np
import pytest

from livewatch.components import Classifier
from livewatch.contract import Segment
from livewatch.delivery import classify_segment
from livewatch.model.artifacts import ModelArtifact, ModelMeta
from livewatch.model.i3d_classifier import I3DOptions, describe, prepare
from livewatch.model.loaded_model import LoadedModel
from livewatch.testing.media import write_hls_stream

TS = 188
VARIANTS = 300
SECONDS = 2.0


class ChannelMeans(LoadedModel):
    """A stand-in network: softmax over each clip's three channel means (deterministic, instant)."""

    def __init__(self):
        meta = ModelMeta(name="fuzz", version="1", frames=8, crop=112, resize=(171, 128))
        self.artifact = ModelArtifact(directory=Path("."), classes=("red", "green", "blue"), meta=meta)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        logits = batch.mean(axis=(2, 3, 4))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class DecodeOnly(Classifier):
    name = "decode-only"
    Options = I3DOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.model = ChannelMeans()

    async def classify(self, segment: Segment):
        decoded, tensor, ms = prepare(self.model, segment, self.options)
        return describe(self.model, segment, decoded, self.model.predict(tensor), ms)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz")
    one = write_hls_stream(folder / "a", segments=3, seconds=SECONDS, size=(320, 180), gop_seconds=1)
    other = write_hls_stream(folder / "b", segments=1, seconds=SECONDS, fps=30, size=(256, 144),
                             gop_seconds=0.5)
    return {"a0": one[0].read_bytes(), "a1": one[1].read_bytes(), "a2": one[2].read_bytes(),
            "b0": other[0].read_bytes(), "c0": with_audio_on_other_pids(folder / "c.ts")}


def with_audio_on_other_pids(path: Path) -> bytes:
    """A video+audio encode whose streams use other PIDs: spliced on, new streams appear mid-file
    (where PyAV's demuxer raised IndexError)."""
    with av.open(str(path), "w", format="mpegts",
                 container_options={"mpegts_start_pid": "0x300"}) as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((180, 320, 3), 10 * i, np.uint8), "rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        for j in range(45):
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
            sound.sample_rate, sound.pts = 48000, 1024 * j
            out.mux(audio.encode(sound))
        out.mux(video.encode(None) + audio.encode(None))
    return path.read_bytes()


def bit_flips(rng, data, _):
    out = bytearray(data)
    for _ in range(rng.randint(1, 40)):
        k = rng.randrange(len(out))
        out[k] ^= 1 << rng.randrange(8)
    return bytes(out)


def zeroed(rng, data, _):
    start, length = rng.randrange(len(data)), rng.randint(TS, 12 * TS)
    return data[:start] + bytes(min(length, len(data) - start)) + data[start + length:]


def truncated(rng, data, _):
    return data[: int(len(data) * rng.uniform(0.1, 0.95))]


def spliced(rng, data, others):
    other = rng.choice(others)
    cut, resume = rng.randrange(len(data) // TS) * TS, rng.randrange(len(other) // TS) * TS
    return data[:cut] + other[resume:]


def joined(rng, data, others):
    return data + rng.choice(others)


def shuffled(rng, data, _):
    packets = [data[k:k + TS] for k in range(0, len(data), TS)]
    start = rng.randrange(len(packets))
    part = packets[start:start + rng.randint(2, 40)]
    rng.shuffle(part)
    return b"".join(packets[:start] + part + packets[start + len(part):])


def dropped(rng, data, _):
    share = rng.uniform(0.002, 0.05)
    return b"".join(data[k:k + TS] for k in range(0, len(data), TS) if rng.random() > share)


MUTATIONS = [bit_flips, zeroed, truncated, spliced, joined, shuffled, dropped]


def variants(originals: dict[str, bytes]):
    rng = random.Random(20261128)
    for n in range(VARIANTS):
        name = rng.choice(["a0", "a1", "a2"])
        others = [v for k, v in originals.items() if k != name]
        kinds = [rng.choice(MUTATIONS) for _ in range(1 if rng.random() < 0.8 else 2)]
        data = originals[name]
        for kind in kinds:
            data = kind(rng, data, others)
        yield f"{n:03d}-{name}-{'+'.join(k.__name__ for k in kinds)}", data


@pytest.mark.parametrize("windows", ["center", "cover"])
async def test_every_corrupt_variant_gives_one_result_in_words(originals, caplog, windows):
    classifier = DecodeOnly(I3DOptions(windows=windows))
    results = {}
    with caplog.at_level(logging.WARNING):
        for name, data in variants(originals):
            segment = Segment(uri=name, stream="fuzz", open=lambda d=data: io.BytesIO(d),
                              duration=SECONDS)
            results[name] = await classify_segment(classifier, segment, timeout=30)

    assert len(results) == VARIANTS
    print(summary(results))
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert tracebacks == []
    errors = {n: d.error for n, d in results.items() if d.error}
    assert not [e for e in errors.values() if "classifier failed" in e or "Traceback" in e]
    ok = {n: d for n, d in results.items() if d.ok}
    for name, d in ok.items():
        assert d.windows and d.label == max(d.top_k, key=lambda t: t.probability).label, name
        assert d.concealed_frames == sum(w.concealed_frames for w in d.windows), name
        assert (d.concealed_frames > 0) == any("concealed" in note for note in d.notes), name
    # Most damage leaves most frames decodable: such segments are classified, not rejected.
    assert len(ok) > 0.75 * VARIANTS, sorted(errors.items())
    # FFmpeg conceals most damage inside a picture itself; a picture that does not decode at all
    # is rarer, and shows in more windows than one.
    assert sum(1 for d in ok.values() if d.concealed_frames) >= (3 if windows == "cover" else 0)
    # Two whole segments joined (of one encode, or of two) are classified.
    assert all(d.ok for n, d in results.items() if n.endswith("-joined")), sorted(errors.items())
    # Cut to 80 % of its bytes or less, a classified segment says it is truncated.
    short = [d for n, d in ok.items() if n.endswith("-truncated") and d.segment_frames < 40]
    assert short and all(d.truncated and d.expected_frames == 50 for d in short)
    assert all("truncated" in d.notes[0] for d in short)
    # What is refused says how much is missing.
    refused = [e for e in errors.values() if "did not decode" in e]
    assert all("%" in e for e in refused)


def summary(results) -> str:
    ok = [d for d in results.values() if d.ok]
    return (f"{len(ok)} classified ({sum(1 for d in ok if d.concealed_frames)} with concealed "
            f"frames, {sum(1 for d in ok if d.truncated)} truncated), "
            f"{len(results) - len(ok)} error detections")
