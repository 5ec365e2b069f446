"""cover_of: the fewest counters that sum to a set of pods' use, and never a
directory holding something the agent did not place."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from agent.observe.cover import Cover, cover_of

G1, G2 = "kubepods/pod-g1", "kubepods/pod-g2"  # Guaranteed sit in kubepods itself
B1, B2 = "kubepods/burstable/pod-b1", "kubepods/burstable/pod-b2"
E1, E2 = "kubepods/besteffort/pod-e1", "kubepods/besteffort/pod-e2"


def disk(*pods: str, extra: tuple[str, ...] = ()) -> Callable[[str], list[str] | None]:
    """What each directory holds, as cgroupfs would list it (pods' containers not shown)."""
    held: dict[str, set[str]] = {}
    for cgroup in (*pods, *extra):
        child = cgroup
        while "/" in child:
            parent = child.rsplit("/", 1)[0]
            held.setdefault(parent, set()).add(child)
            child = parent
    return lambda d: sorted(held[d]) if d in held else None


def value(cover: Cover, use: dict[str, float]) -> float:
    """The cover's sum, given each pod's use (a directory's use is its pods')."""

    def of(cgroup: str) -> float:
        return sum(v for p, v in use.items() if p == cgroup or p.startswith(cgroup + "/"))

    return sum(map(of, cover.add)) - sum(map(of, cover.subtract))


def test_kubelets_usual_split_is_kubepods_less_besteffort() -> None:
    pods = (G1, G2, B1, B2, E1, E2)
    cover = cover_of([G1, G2, B1, B2], [E1, E2], disk(*pods))
    assert cover == Cover((G1, G2, B1, B2), ("kubepods",), ("kubepods/besteffort",))
    use = dict(zip(pods, (1.0, 2.0, 4.0, 8.0, 16.0, 32.0), strict=True))
    assert value(cover, use) == 15.0


def test_pods_outside_their_usual_level_are_counted_one_by_one() -> None:
    b3, e3 = "kubepods/burstable/pod-b3", "kubepods/besteffort/pod-e3"
    pods = (G1, G2, B1, B2, b3, E1, E2, e3)
    # b3 is a batch pod with requests (Burstable); e3 an online pod with none (BestEffort)
    online = [G1, G2, B1, B2, e3]
    cover = cover_of(online, [b3, E1, E2], disk(*pods))
    assert cover.add[0] == "kubepods" and b3 in cover.subtract
    assert len(cover.reads) < len(online)
    use = {p: float(2**i) for i, p in enumerate(pods)}
    assert value(cover, use) == sum(use[p] for p in online)


def test_a_level_holding_only_online_pods_is_read_whole() -> None:
    cover = cover_of([G1, B1, B2], [], disk(G1, B1, B2))
    assert cover.add == ("kubepods",) and cover.subtract == ()


def test_a_cgroup_the_agent_did_not_place_keeps_its_directory_from_being_counted_whole() -> None:
    stranger = "kubepods/burstable/pod-not-yet-seen"
    b3 = "kubepods/burstable/pod-b3"
    # Nor any directory above it: kubepods less besteffort would be 2 reads for 3 pods.
    cover = cover_of([B1, B2, b3], [E1, E2], disk(B1, B2, b3, E1, E2, extra=(stranger,)))
    assert "kubepods" not in cover.add and "kubepods/burstable" not in cover.add
    assert sorted(cover.add) == [B1, B2, b3] and cover.subtract == ()
    use = {p: float(2**i) for i, p in enumerate((B1, B2, b3, E1, E2, stranger))}
    assert value(cover, use) == 7.0


def test_a_stranger_below_a_level_the_set_has_nothing_in_is_taken_away_with_it() -> None:
    stranger = "kubepods/besteffort/pod-not-yet-seen"
    pods = (G1, B1, B2, E1, E2)
    cover = cover_of([G1, B1, B2], [E1, E2], disk(*pods, extra=(stranger,)))
    assert cover == Cover((G1, B1, B2), ("kubepods",), ("kubepods/besteffort",))
    batch = cover_of([E1, E2], [G1, B1, B2], disk(*pods, extra=(stranger,)))
    assert sorted(batch.reads) == [E1, E2]  # besteffort itself holds the stranger
    use = {p: float(2**i) for i, p in enumerate((*pods, stranger))}
    assert value(cover, use) == 7.0 and value(batch, use) == 24.0


def test_a_directory_gone_is_not_counted_whole() -> None:
    cover = cover_of([G1, B1], [E1], lambda d: None)
    assert sorted(cover.add) == sorted([G1, B1]) and cover.subtract == ()


def test_no_online_pod_is_nothing_to_read() -> None:
    assert cover_of([], [E1], disk(E1)) == Cover()


def test_systemd_names() -> None:
    level = "kubepods.slice/kubepods-burstable.slice"
    online = [f"{level}/kubepods-burstable-pod{i}.slice" for i in range(3)]
    batch = "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice"
    cover = cover_of(online, [batch], disk(*online, batch))
    assert cover.reads == (level,)  # one read for three pods
    use = {p: float(i + 1) for i, p in enumerate((*online, batch))}
    assert value(cover, use) == 6.0


def test_on_a_tie_the_directory_is_read_as_the_other_sums_share_it() -> None:
    assert cover_of([B1], [], disk(B1)).reads == ("kubepods/burstable",)
    assert cover_of([E1], [B1], disk(B1, E1)).reads == ("kubepods/besteffort",)


LEVELS = ("kubepods", "kubepods/burstable", "kubepods/besteffort")
# Each cgroup: its level, whether colocd placed it, and whether it is one of the wanted pods.
CGROUPS = st.lists(st.tuples(st.sampled_from(LEVELS), st.booleans(), st.booleans()), max_size=12)


@given(CGROUPS)
def test_any_placement_sums_to_the_wanted_pods_and_never_to_a_stranger(
    cgroups: list[tuple[str, bool, bool]],
) -> None:
    names = [f"{level}/pod-{i}" for i, (level, _, _) in enumerate(cgroups)]
    placed = [n for n, (_, known, _) in zip(names, cgroups, strict=True) if known]
    wanted = [n for n, (_, known, w) in zip(names, cgroups, strict=True) if known and w]
    others = [n for n in placed if n not in wanted]
    strangers = tuple(n for n in names if n not in placed)
    use = {n: float(2**i) for i, n in enumerate(names)}  # every subset sums differently
    for mine, theirs in ((wanted, others), (others, wanted), (placed, [])):
        cover = cover_of(mine, theirs, disk(*placed, extra=strangers))
        assert value(cover, use) == sum(use[n] for n in mine)
        assert len(cover.reads) <= len(mine)
