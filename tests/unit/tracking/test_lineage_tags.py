"""A version's data tags read against what its run logged: MLflow lets anyone who may
edit the model rewrite a tag, never a run's logged inputs."""

from tasks.tracking.dataset_inputs import tag_disagreements

A, B, C, D = "a" * 32, "b" * 32, "c" * 32, "d" * 32
REMOTE = "/srv/dvc"
LOGGED = {
    "curated.train": {"md5": A, "path": "datasets/train.csv", "remote": REMOTE},
    "curated.test": {"md5": B, "path": "datasets/test.csv", "remote": REMOTE},
    "raw.train": {"md5": C, "path": "data/imports/c/tickets.csv", "remote": REMOTE},
}
TAGS = {
    "thaw.dvc_remote": REMOTE,
    "thaw.curated.train.md5": A,
    "thaw.curated.train.path": "datasets/train.csv",
    "thaw.curated.test.md5": B,
    "thaw.curated.test.path": "datasets/test.csv",
    "thaw.raw.train.md5": C,
    "thaw.raw.train.path": "data/imports/c/tickets.csv",
    "thaw.raw.remote": REMOTE,
    "thaw.raw.policy": "same_remote",
}


def test_tags_as_the_run_logged_them_agree():
    assert tag_disagreements(TAGS, LOGGED) == []


def test_a_digest_pointed_at_other_data_is_named_with_both_values():
    problems = tag_disagreements(TAGS | {"thaw.curated.train.md5": B}, LOGGED)
    assert problems == [f"tag thaw.curated.train.md5 reads {B!r}, but the run logged {A!r}: the tag was edited"]


def test_a_removed_tag_a_moved_remote_and_a_new_split_are_each_named():
    tags = {k: v for k, v in TAGS.items() if k != "thaw.raw.train.md5"}
    tags |= {"thaw.dvc_remote": "s3://elsewhere", "thaw.curated.validation.md5": D}
    problems = tag_disagreements(tags, LOGGED)
    assert len(problems) == 3
    assert any(p.startswith("tag thaw.raw.train.md5 reads nothing (no such tag)") for p in problems)
    assert any(p.startswith("tag thaw.dvc_remote reads 's3://elsewhere'") for p in problems)
    assert "tag thaw.curated.validation.md5 names data the run logged no input for" in problems


def test_a_raw_policy_edited_to_skip_the_raw_check_is_named():
    problems = tag_disagreements(TAGS | {"thaw.raw.policy": "local"}, LOGGED)
    edited = "tag thaw.raw.policy reads 'local', but the run pushed raw data to a remote: the tag was edited"
    assert problems == [edited]
    kept_local = {k: v | {"remote": ""} if k.startswith("raw.") else v for k, v in LOGGED.items()}
    local_tags = TAGS | {"thaw.raw.policy": "local", "thaw.raw.remote": ""}
    assert tag_disagreements(local_tags, kept_local) == []


def test_a_hundred_thousand_character_tag_is_cut_in_the_message():
    (problem,) = tag_disagreements(TAGS | {"thaw.curated.test.path": "x" * 100_000}, LOGGED)
    assert problem.startswith("tag thaw.curated.test.path reads 'xxx") and len(problem) < 300


def test_an_input_logged_twice_differently_is_reported_and_nothing_logged_is_left_to_the_caller():
    problems = tag_disagreements(TAGS, LOGGED | {"curated.test": None})
    assert problems == ["the run logged its curated.test input inconsistently: its tags cannot be checked"]
    assert tag_disagreements(TAGS | {"thaw.curated.train.md5": B}, {}) == []
