"""Name resolution for web.fetch: /etc/hosts first, then DNS, always inside the call's deadline.

glibc's getaddrinfo cannot be given a deadline (a name server that never answers blocks the
single-threaded worker until the supervisor kills it), and a name passed fully qualified
(`host.`, to keep resolv.conf's search domains out) is never matched against /etc/hosts, so
`--add-host`/`hostAliases` overrides and sinkholes would be bypassed. Here:

1. /etc/hosts is read on every lookup (as glibc does) and an entry for the name wins: its
   addresses are returned, and checked by the caller like any other;
2. otherwise A and AAAA are asked of the name servers of /etc/resolv.conf (dnspython builds
   and parses the messages, over UDP, TCP when an answer is truncated), the name absolute (no
   search domains), every wait bounded by the time the call has left.

The caller (pinned_transport) checks every address returned before connecting to one.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mcp_gateway.ipc.errors import ErrorCode, Refusal

HOSTS_FILE = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
# A hosts file bigger than this is not read past it (sinkhole lists run to a few MB).
HOSTS_READ_CAP = 16 * 1024 * 1024


def hosts_addresses(name: str, path: str = HOSTS_FILE) -> list[str]:
    """Addresses /etc/hosts gives `name` (lower-case ASCII, no trailing dot), in file order."""
    try:
        with open(path, "rb") as f:
            data = f.read(HOSTS_READ_CAP)
    except FileNotFoundError:
        return []
    except OSError as e:
        # Fail closed: skipping an unreadable hosts file would bypass its overrides and
        # sinkholes (Landlock refuses a file replaced since the worker started).
        raise Refusal(ErrorCode.UPSTREAM_ERROR, f"could not read the hosts file {path}: {e.strerror}; the gateway "
                                                "may need a restart after it was replaced") from None
    out: list[str] = []
    for raw in data.split(b"\n"):
        fields = raw.split(b"#", 1)[0].split()
        if len(fields) < 2:
            continue
        names = {f.decode("ascii", "replace").lower().rstrip(".") for f in fields[1:]}
        if name not in names:
            continue
        text = fields[0].decode("ascii", "replace")
        try:
            addr = str(ipaddress.ip_address(text))
        except ValueError:
            continue  # glibc skips a line whose address does not parse
        if addr not in out:
            out.append(addr)
    return out


@dataclass(frozen=True, slots=True)
class DnsResolver:
    """A resolver with a deadline. `port` and the file paths are for tests (a server of their own)."""

    hosts_file: str = HOSTS_FILE
    resolv_conf: str = RESOLV_CONF
    port: int = 53

    def __call__(self, host: str, port: int, timeout_s: float) -> list[str]:
        listed = hosts_addresses(host, self.hosts_file)
        if listed:
            return listed
        config = dns.resolver.Resolver(configure=False)
        try:
            config.read_resolv_conf(self.resolv_conf)
        except (OSError, dns.exception.DNSException):
            config.nameservers = []
        servers = [str(ns) for ns in config.nameservers]
        if not servers:
            raise Refusal(ErrorCode.UPSTREAM_ERROR, f"could not resolve {host!r}: no DNS server configured "
                                                    f"({self.resolv_conf})")
        deadline = time.monotonic() + timeout_s
        qname = dns.name.from_text(host)  # absolute: no search domain is ever appended
        out: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            for addr in self._query(host, qname, rdtype, servers, config.timeout, deadline):
                if addr not in out:
                    out.append(addr)
        return out

    def _query(self, host: str, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, servers: list[str],
               per_try_s: float, deadline: float) -> list[str]:
        """One question, asked of each server in turn (rounds until the deadline), never past it.

        dnspython's own Resolver.resolve() is not used: between rounds it sleeps a backoff of
        up to two seconds whatever lifetime it was given.
        """
        failures: list[str] = []
        while True:
            for server in servers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Refusal(ErrorCode.TIMEOUT, f"the DNS lookup of {host!r} did not finish within the call's "
                                                     f"timeout ({'; '.join(failures[-2:]) or 'no answer'})")
                query = dns.message.make_query(qname, rdtype)
                try:
                    response = dns.query.udp(query, server, timeout=min(per_try_s, left), port=self.port,
                                             ignore_unexpected=True)
                    if response.flags & dns.flags.TC:
                        response = dns.query.tcp(query, server, timeout=min(per_try_s, deadline - time.monotonic()),
                                                 port=self.port)
                except dns.exception.Timeout:
                    failures.append(f"{server}: no answer")
                    continue
                except (OSError, dns.exception.DNSException) as e:
                    failures.append(f"{server}: {type(e).__name__}")
                    continue
                rcode = response.rcode()
                if rcode == dns.rcode.NXDOMAIN:
                    raise Refusal(ErrorCode.NOT_FOUND, f"host {host!r} does not exist (DNS: NXDOMAIN)")
                if rcode != dns.rcode.NOERROR:
                    failures.append(f"{server}: {dns.rcode.to_text(rcode)}")
                    continue
                try:
                    answer = response.resolve_chaining().answer
                except dns.exception.DNSException as e:
                    raise Refusal(ErrorCode.UPSTREAM_ERROR, f"could not resolve {host!r}: {type(e).__name__}") from None
                return [str(ipaddress.ip_address(rr.address)) for rr in answer or ()]
            if all(not f.endswith("no answer") for f in failures[-len(servers):]):
                # Every server answered, none usefully (SERVFAIL, REFUSED, errors): do not spin.
                raise Refusal(ErrorCode.UPSTREAM_ERROR,
                              f"could not resolve {host!r}: {'; '.join(failures[-len(servers):])}")


def warm_resolver() -> None:
    """Import what a lookup needs lazily (rdata classes, the wire codec) while files are open."""
    import dns.rdtypes.ANY.CNAME  # noqa: F401
    import dns.rdtypes.ANY.SOA  # noqa: F401
    import dns.rdtypes.IN.A  # noqa: F401
    import dns.rdtypes.IN.AAAA  # noqa: F401

    q = dns.message.make_query(dns.name.from_text("warm.invalid."), dns.rdatatype.A, dns.rdataclass.IN)
    wire = q.to_wire()
    dns.message.from_wire(wire)
    response = dns.message.make_response(q)
    dns.message.from_wire(response.to_wire())
