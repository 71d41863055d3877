"""Stage functions used by the core tests."""


def write(ctx):
    src = [(p / "out.txt").read_text().split(" ")[0] for p in ctx.inputs.values()]
    text = str(ctx.config["v"]) + (" <- " + ",".join(src) if src else "")
    (ctx.out / "out.txt").write_text(text)
    return {"v": ctx.config["v"]}


def fail(ctx):
    raise ValueError("planned failure\nsecond line")
