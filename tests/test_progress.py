"""Progress of a long run: a line every 5 % where stderr is not a terminal, a bar where it is."""

import io

from fleet.progress import ProgressLines, progress_reporter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def percents(text: str) -> list[int]:
    """The percentages of progress lines ``name: P% (...)``."""
    return [int(line.split(": ")[1].split("%")[0]) for line in text.splitlines()]


def test_one_line_per_five_percent_passed():
    out = io.StringIO()
    report = ProgressLines(48 * 3600.0, "small", out)
    for k in range(1, 193):  # every 15 min of 48 h: 0.52 % a step, so each 5 % is passed once, by at most 0.52 %
        report(k * 900.0)
    assert percents(out.getvalue()) == list(range(5, 101, 5))
    assert out.getvalue().splitlines()[-1].startswith("small: 100% (48.0 of 48.0 sim-h) after ")


def test_a_jump_over_several_steps_writes_one_line():
    out = io.StringIO()
    report = ProgressLines(100.0, "run", out)
    for t in (3.0, 17.0, 18.0, 19.9, 20.0, 100.0):
        report(t)
    assert percents(out.getvalue()) == [17, 20, 100]


def test_lines_for_a_file_and_a_bar_for_a_terminal():
    for stream, lines in ((io.StringIO(), True), (Terminal(), False)):
        with progress_reporter(7200.0, "tiny", stream) as report:
            report(3600.0)
            report(7200.0)
        text = stream.getvalue()
        assert ("tiny: 50% (1.0 of 2.0 sim-h)" in text) == lines
        assert ("2.0/2.0 sim-h" in text) == (not lines)  # tqdm's bar, with its bar_format
