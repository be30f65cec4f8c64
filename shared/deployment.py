# ruff: noqa: RUF009  -- setting() returns a dataclasses.field(); ruff cannot know that.
"""A deployment folder: every component's config and keys, one copyable folder per machine.

Layout made by :func:`init_deployment`::

    DIR/deployment.toml          manifest for add-edge / revoke-edge (stays on the admin machine)
    DIR/p0/config.toml           -> /etc/splitface/p0/ on server P0
    DIR/p0/keys/p0.key_secret    P0's secret key (0600); p0.key its public key
    DIR/p0/keys/p1.key           P1's public key (the peer)
    DIR/p0/keys/dealer.key       the dealer's public key
    DIR/p0/keys/edges/NAME.key   allow-list: one public key per terminal
    DIR/p1/...                   the same for P1
    DIR/dealer/config.toml       -> /etc/splitface/dealer/; keys/servers/{p0,p1}.key allow-list
    DIR/NAME/config.toml         -> /etc/splitface/edge/ on terminal NAME; keys/{NAME.key_secret,
                                    p0.key,p1.key}
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from splitface.shared import keys
from splitface.shared.config import (
    DealerConfig,
    EdgeConfig,
    EventsOptions,
    ModelOptions,
    ServerConfig,
    ServerLink,
    ServersOptions,
    load_dealer_config,
    load_edge_config,
    load_server_config,
    write_config,
)
from splitface.shared.config_schema import (
    ConfigError,
    check_name,
    dump_toml,
    endpoint,
    in_range,
    load_toml,
    setting,
)

T = TypeVar("T")
MANIFEST = "deployment.toml"
SERVERS = ("p0", "p1")
RESERVED = frozenset({"p0", "p1", "dealer", "keys", "edges", "servers"})
#: Offsets from the base port: P0's edge port, P1's edge port, P0's peer port, the dealer.
P0_EDGE, P1_EDGE, PEER, DEALER, EVENTS = 0, 1, 2, 3, 10


class DeploymentError(ValueError):
    """A deployment folder operation that cannot proceed; says what and how to fix it."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What add-edge needs to make a terminal folder consistent with the rest."""

    layout: Literal["system", "local"] = setting(
        "system: state under /var/lib/splitface, events on ipc (one terminal per machine); "
        "local: state inside each folder, events on loopback tcp (everything on one host).")
    p0_edge_endpoint: str = setting("Where terminals reach P0.", check=endpoint(bind=False))
    p1_edge_endpoint: str = setting("Where terminals reach P1.", check=endpoint(bind=False))
    model_dir: Path = setting("models.model_dir written into new terminal configs.")
    next_events_port: int = setting("Local layout: events port of the next terminal "
                                    "(65536 = used up).", check=in_range(1, 65536))


@dataclass(frozen=True)
class Deployment:
    """Paths inside a deployment folder."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def folder(self, name: str) -> Path:
        return self.root / name

    def config_path(self, name: str) -> Path:
        return self.root / name / "config.toml"

    def keys_dir(self, name: str) -> Path:
        return self.root / name / "keys"

    def allow_list(self, server: str) -> Path:
        return self.keys_dir(server) / "edges"

    def load_manifest(self) -> Manifest:
        if not self.manifest_path.exists():
            raise DeploymentError(f"{self.root} is not a deployment folder (no {MANIFEST}); "
                                  "create one with 'splitface-keys init'")
        return load_toml(Manifest, self.manifest_path)

    def write_manifest(self, manifest: Manifest) -> None:
        text = dump_toml(manifest, base_dir=self.root.absolute(), header=(
            "splitface deployment manifest, read by 'splitface-keys add-edge' and "
            "'revoke-edge'. Keep it with this folder on the admin machine."))
        tmp = self.manifest_path.with_name(f".{MANIFEST}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.manifest_path)

    def edge_names(self) -> list[str]:
        """Terminals in this deployment: folders other than p0/p1/dealer holding a config."""
        return sorted(p.parent.name for p in self.root.glob("*/config.toml")
                      if p.parent.name not in RESERVED)


def _tcp(host: str, port: int) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def _bind_host(host: str, bind_any: bool) -> str:
    """ZeroMQ binds to IP addresses or interfaces, not DNS names: a name binds all interfaces."""
    if bind_any:
        return "*"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "*"
    return host


def _state_dir(layout: str, name: str) -> Path:
    return Path("state") if layout == "local" else Path("/var/lib/splitface") / name


@dataclass(frozen=True)
class InitOptions:
    """Hosts and ports of a new deployment."""

    edges: int = 1
    host: str = "127.0.0.1"
    p0_host: str = ""
    p1_host: str = ""
    dealer_host: str = ""
    base_port: int = 7100
    layout: Literal["system", "local"] = "system"
    bind_any: bool = False
    model_dir: Path = Path("/opt/splitface/models")
    admins: tuple[str, ...] = ()  # terminals that may enrol, train, revoke, rotate keys


def init_deployment(out: Path, options: InitOptions) -> Deployment:
    """Generate keys and configs for P0, P1, the dealer and ``options.edges`` terminals."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DeploymentError(f"{out} exists and is not empty; choose a new --out folder")
    if options.edges < 0:
        raise DeploymentError("--edges must be >= 0")
    for admin in options.admins:
        problem = check_name(admin)
        if problem:
            raise DeploymentError(f"--admin: terminal name {problem}")
    last = options.base_port + (EVENTS + options.edges if options.layout == "local" else DEALER)
    if options.base_port < 1 or last > 65535:
        raise DeploymentError(f"ports {options.base_port}..{last} do not fit in 1-65535; "
                              "choose another --base-port")
    hosts = {"p0": options.p0_host or options.host, "p1": options.p1_host or options.host,
             "dealer": options.dealer_host or options.host}
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)  # holds every secret key of the deployment
    dep = Deployment(out)
    base = options.base_port
    pairs = {name: keys.KeyPair.generate() for name in (*SERVERS, "dealer")}
    for name, pair in pairs.items():
        keys.write_keypair(dep.keys_dir(name), name, pair)

    dealer_ep = _tcp(hosts["dealer"], base + DEALER)
    peer_ep = _tcp(hosts["p0"], base + PEER)
    for party, name in enumerate(SERVERS):
        other = SERVERS[1 - party]
        kdir = dep.keys_dir(name)
        keys.write_public_key(kdir / f"{other}.key", other, pairs[other].public)
        keys.write_public_key(kdir / "dealer.key", "dealer", pairs["dealer"].public)
        dep.allow_list(name).mkdir()
        bind = _bind_host(hosts[name], options.bind_any)
        config = ServerConfig(
            party=party,
            listen_edge=_tcp(bind, base + (P0_EDGE if party == 0 else P1_EDGE)),
            listen_peer=_tcp(bind, base + PEER) if party == 0 else None,
            peer_endpoint=peer_ep if party == 1 else None,
            dealer_endpoint=dealer_ep,
            secret_key_file=kdir / f"{name}.key_secret",
            peer_public_key_file=kdir / f"{other}.key",
            dealer_public_key_file=kdir / "dealer.key",
            allowed_edge_keys_dir=dep.allow_list(name),
            state_dir=dep.folder(name) / _state_dir(options.layout, name),
            admin_terminals=tuple(options.admins),
        )
        write_config(config, dep.config_path(name), header=_header(f"server P{party}", name))

    dkdir = dep.keys_dir("dealer")
    allowed = tuple(keys.write_public_key(dkdir / "servers" / f"{name}.key", name,
                                          pairs[name].public) for name in SERVERS)
    dealer = DealerConfig(
        listen=_tcp(_bind_host(hosts["dealer"], options.bind_any), base + DEALER),
        secret_key_file=dkdir / "dealer.key_secret",
        allowed_server_keys=allowed,
        state_dir=dep.folder("dealer") / _state_dir(options.layout, "dealer"),
    )
    write_config(dealer, dep.config_path("dealer"), header=_header("the dealer", "dealer"))

    dep.write_manifest(Manifest(
        layout=options.layout,
        p0_edge_endpoint=_tcp(hosts["p0"], base + P0_EDGE),
        p1_edge_endpoint=_tcp(hosts["p1"], base + P1_EDGE),
        model_dir=Path(options.model_dir).absolute(),
        next_events_port=base + EVENTS,
    ))
    for i in range(1, options.edges + 1):
        add_edge(dep.root, f"edge-{i}")
    return dep


def _header(what: str, name: str) -> str:
    return (f"splitface configuration for {what}. Generated by 'splitface-keys'; copy this whole "
            f"folder ({name}/) to the machine, see docs/DEPLOY.md. Relative paths are relative "
            "to this file's folder.")


def add_edge(root: Path, name: str, *, public_key_file: Path | None = None) -> Path:
    """Add terminal ``name``: its folder (config + keys) and its key in both allow-lists.

    With ``public_key_file`` the terminal made its own key pair on the device and only the
    public key comes here; its folder then has no secret key and the config expects
    ``keys/NAME.key_secret`` to be put in place on the terminal.
    """
    dep = Deployment(Path(root))
    manifest = dep.load_manifest()
    problem = check_name(name)
    if problem:
        raise DeploymentError(f"terminal name {problem}")
    if name in RESERVED or name.startswith("."):
        raise DeploymentError(f"{name!r} is reserved; choose another terminal name")
    folder = dep.folder(name)
    if folder.exists():
        raise DeploymentError(f"{folder} already exists; revoke it first or choose another name")
    for server in SERVERS:
        if (dep.allow_list(server) / f"{name}.key").exists():
            raise DeploymentError(f"{name} is already on {server}'s allow-list")
    if public_key_file is not None:
        public = keys.load_public_key(public_key_file)
        pair = None
    else:
        pair = keys.KeyPair.generate()
        public = pair.public
    for server in SERVERS if pair is None else ():  # a fresh pair cannot collide
        for other, key in keys.load_public_keys_dir(dep.allow_list(server)).items():
            if key == public:
                raise DeploymentError(f"this public key already belongs to {other} on {server}'s "
                                      "allow-list; every terminal needs its own key pair")
    local = manifest.layout == "local"
    if local and manifest.next_events_port > 65535:
        raise DeploymentError("no event ports left above 65535; start a new deployment with a "
                              "lower --base-port")
    staging = dep.root / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_edge_folder(dep, manifest, name, staging, pair, public)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for server in SERVERS:
        keys.write_public_key(dep.allow_list(server) / f"{name}.key", name, public)
    if local:
        dep.write_manifest(replace(manifest, next_events_port=manifest.next_events_port + 1))
    return folder


def _write_edge_folder(dep: Deployment, manifest: Manifest, name: str, staging: Path,
                       pair: keys.KeyPair | None, public: bytes) -> None:
    """Fill ``staging`` with what ``dep.folder(name)`` will hold: config and keys."""
    folder = dep.folder(name)
    kdir = staging / "keys"
    if pair is not None:
        keys.write_keypair(kdir, name, pair)
    else:
        keys.write_public_key(kdir / f"{name}.key", name, public)
    links = {}
    for server in SERVERS:
        server_public = keys.load_public_key(dep.keys_dir(server) / f"{server}.key")
        keys.write_public_key(kdir / f"{server}.key", server, server_public)
        ep = manifest.p0_edge_endpoint if server == "p0" else manifest.p1_edge_endpoint
        links[server] = ServerLink(endpoint=ep, public_key_file=folder / "keys" / f"{server}.key")
    events = (_tcp("127.0.0.1", manifest.next_events_port) if manifest.layout == "local"
              else EventsOptions().publish)
    config = EdgeConfig(
        terminal_id=name,
        secret_key_file=folder / "keys" / f"{name}.key_secret",
        state_dir=folder / _state_dir(manifest.layout, "edge"),
        servers=ServersOptions(p0=links["p0"], p1=links["p1"]),
        models=ModelOptions(model_dir=manifest.model_dir),
        events=EventsOptions(publish=events),
    )
    # Written as if already in place: paths are relative to the final folder.
    text = dump_toml(config, base_dir=folder.absolute(),
                     header=_header(f"terminal {name}", name))
    (staging / "config.toml").write_text(text, encoding="utf-8")


def revoke_edge(root: Path, name: str) -> list[Path]:
    """Remove terminal ``name`` from both allow-lists and delete its folder (and secret key).

    Returns the removed allow-list files. The servers must then receive the new allow-lists
    and be restarted (see docs/DEPLOY.md, key rotation).
    """
    dep = Deployment(Path(root))
    dep.load_manifest()
    if name in RESERVED or check_name(name):
        raise DeploymentError(f"{name!r} is not a terminal name")
    removed = []
    for server in SERVERS:
        entry = dep.allow_list(server) / f"{name}.key"
        if entry.exists():
            entry.unlink()
            removed.append(entry)
    folder = dep.folder(name)
    if not removed and not folder.exists():
        raise DeploymentError(f"no terminal {name!r} in {dep.root}")
    shutil.rmtree(folder, ignore_errors=True)
    return removed


def check_deployment(root: Path) -> list[str]:
    """Cross-check a deployment folder; returns problems (empty when consistent).

    Loads every config (without the checks that only make sense on the target machine, such
    as the model folder), every key, and checks that each link pins the right public key.
    """
    dep = Deployment(Path(root))
    dep.load_manifest()
    found: list[str] = []

    def attempt(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, keys.KeyFileError, DeploymentError) as exc:
            found.append(f"{what}: {exc}")
            return None

    publics: dict[str, bytes] = {}
    servers: dict[str, ServerConfig] = {}
    for party, name in enumerate(SERVERS):
        config = attempt(name, load_server_config, dep.config_path(name), party=party,
                         check_files=True)
        if config is not None:
            servers[name] = config
            pair = attempt(name, keys.load_secret_key, config.secret_key_file)
            if pair is not None:
                publics[name] = pair[0]
    dealer = attempt("dealer", load_dealer_config, dep.config_path("dealer"))
    if dealer is not None:
        pair = attempt("dealer", keys.load_secret_key, dealer.secret_key_file)
        if pair is not None:
            publics["dealer"] = pair[0]
        allowed = {attempt("dealer", keys.load_public_key, p) for p in dealer.allowed_server_keys}
        for name in SERVERS:
            if name in publics and publics[name] not in allowed:
                found.append(f"dealer: allowed_server_keys does not contain {name}'s public key")
    for name, config in servers.items():
        other = SERVERS[1 - config.party]
        _expect(found, name, "peer_public_key_file", config.peer_public_key_file, publics, other)
        _expect(found, name, "dealer_public_key_file", config.dealer_public_key_file, publics,
                "dealer")
    allow = {name: attempt(name, keys.load_public_keys_dir, c.allowed_edge_keys_dir) or {}
             for name, c in servers.items()}
    for edge in dep.edge_names():
        config = attempt(edge, load_edge_config, dep.config_path(edge), check_files=False)
        if config is None:
            continue
        if config.terminal_id != edge:
            found.append(f"{edge}: terminal_id is {config.terminal_id!r}, folder is {edge!r}")
        own = None
        if config.secret_key_file.exists():
            pair = attempt(edge, keys.load_secret_key, config.secret_key_file)
            own = pair[0] if pair else None
        else:
            own = attempt(edge, keys.load_public_key, dep.keys_dir(edge) / f"{edge}.key")
        for server in SERVERS:
            link = getattr(config.servers, server)
            _expect(found, edge, f"servers.{server}.public_key_file", link.public_key_file,
                    publics, server)
            if server in allow and own is not None and allow[server].get(edge) != own:
                found.append(f"{server}: allow-list has no entry {edge}.key matching {edge}'s key")
    for server, entries in allow.items():
        for stray in sorted(set(entries) - set(dep.edge_names())):
            found.append(f"{server}: allow-list entry {stray}.key has no terminal folder")
    return found


def _expect(found: list[str], who: str, key: str, path: Path, publics: dict[str, bytes],
            owner: str) -> None:
    try:
        value = keys.load_public_key(path)
    except keys.KeyFileError as exc:
        found.append(f"{who}: {key}: {exc}")
        return
    if owner in publics and value != publics[owner]:
        found.append(f"{who}: {key} ({path}) is not {owner}'s current public key")
