"""Stage functions used by the core tests."""


def write(ctx):
    src = [(p / "out.txt").read_text().split(" ")[0] for p in ctx.inputs.values()]
    text = str(ctx.config["v"]) + (" <- " + ",".join(src) if src else "")
    (ctx.out / "out.txt").write_text(text)
    return {"v": ctx.config["v"]}


def fail(ctx):
    raise ValueError("planned failure\nsecond line")


def write_big(ctx):
    """A stage with one file larger than `integrity.SMALL_FILE` as the tests set it."""
    (ctx.out / "big.bin").write_bytes(bytes(range(256)) * int(ctx.config["kib"]) * 4)
    (ctx.out / "sub").mkdir()
    (ctx.out / "sub" / "small.txt").write_text("small")
    return {"kib": ctx.config["kib"]}


def exit_stage(ctx):
    raise SystemExit(3)
def where(ctx):
    """Sleeps `sleep` seconds and reports the GPU and device its process was given."""
    import os
    import time

    time.sleep(ctx.config.get("sleep", 0))
    return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "device": os.environ.get("SIPO_BENCH_DEVICE")}
