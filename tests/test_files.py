"""Input and output files: regular files read up to a bound; outputs never written through a link."""

import pytest

from fleet.errors import ConfigError, RunDirError
from fleet.files import read_regular_file, write_new_file


def test_a_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 10)
    assert read_regular_file(tmp_path / "f", 10, "input") == b"x" * 10
    with pytest.raises(ConfigError, match="input .*f is larger than 9 bytes"):
        read_regular_file(tmp_path / "f", 9, "input")


def test_a_new_file_is_created_and_nothing_is_written_over(tmp_path):
    assert write_new_file(tmp_path / "a.csv", lambda f: f.write(b"1,2\n")) == tmp_path / "a.csv"
    assert (tmp_path / "a.csv").read_bytes() == b"1,2\n"
    (tmp_path / "link.csv").symlink_to(tmp_path / "planted.csv")
    for name in ("a.csv", "link.csv"):
        with pytest.raises(RunDirError, match=f"{name}: already exists; nothing was written over it"):
            write_new_file(tmp_path / name, lambda f: f.write(b"new"))
    assert (tmp_path / "a.csv").read_bytes() == b"1,2\n" and not (tmp_path / "planted.csv").exists()


def test_overwrite_replaces_the_name_not_what_a_link_points_to(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    (tmp_path / "out.png").symlink_to(tmp_path / "thesis.tex")
    write_new_file(tmp_path / "out.png", lambda f: f.write(b"png"), overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
    assert not (tmp_path / "out.png").is_symlink() and (tmp_path / "out.png").read_bytes() == b"png"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failed_write_leaves_no_new_file_and_the_old_one_whole(tmp_path, overwrite):
    if overwrite:
        (tmp_path / "out.json").write_text("old")

    def fail(f):
        f.write(b"half")
        raise ValueError("NaN is not JSON")

    with pytest.raises(ValueError, match="NaN"):
        write_new_file(tmp_path / "out.json", fail, overwrite=overwrite)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == ({"out.json": "old"} if overwrite else {})
