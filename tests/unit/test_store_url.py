"""Table tests of the --store spellings (ipam/store/url.py), each with an IPv4 and an IPv6 twin.

Pure parsing: no test here opens a store or sends a packet.
"""

import pytest

from ipam.errors import InvalidInput
from ipam.store.url import EtcdLocation, parse_store_url

# (value, endpoints, tls) twins: the same spelling with an IPv4 and an IPv6 endpoint.
ACCEPTED = [
    ("etcd://127.0.0.1:2379", (("127.0.0.1", 2379),), False),
    ("etcd://[::1]:2379", (("::1", 2379),), False),
    ("http://127.0.0.1:2379", (("127.0.0.1", 2379),), False),
    ("http://[::1]:2379", (("::1", 2379),), False),
    ("https://127.0.0.1:2379", (("127.0.0.1", 2379),), True),
    ("https://[::1]:2379", (("::1", 2379),), True),
    ("etcd+https://127.0.0.1:2379", (("127.0.0.1", 2379),), True),
    ("etcd+https://[::1]:2379", (("::1", 2379),), True),
    # the port defaults to etcd's own
    ("etcd://10.1.1.1", (("10.1.1.1", 2379),), False),
    ("etcd://[fd00::2]", (("fd00::2", 2379),), False),
    # lists of endpoints, names among them
    ("etcd://10.1.1.1:2379,etcd-b:12379", (("10.1.1.1", 2379), ("etcd-b", 12379)), False),
    ("etcd://[fd00::1]:2379,etcd-b:12379", (("fd00::1", 2379), ("etcd-b", 12379)), False),
    ("https://10.0.0.1:2379,10.0.0.2:2379", (("10.0.0.1", 2379), ("10.0.0.2", 2379)), True),
    ("https://[fd00::1]:2379,[fd00::2]:2379", (("fd00::1", 2379), ("fd00::2", 2379)), True),
    # a trailing slash (as etcdctl prints endpoints) and schemes in capitals
    ("http://127.0.0.1:2379/", (("127.0.0.1", 2379),), False),
    ("http://[::1]:2379/", (("::1", 2379),), False),
    ("HTTPS://127.0.0.1:2379", (("127.0.0.1", 2379),), True),
    ("HTTPS://[::1]:2379", (("::1", 2379),), True),
    ("etcd://localhost:2379", (("localhost", 2379),), False),
    ("etcd://etcd_1.svc.cluster.local:2379", (("etcd_1.svc.cluster.local", 2379),), False),
]


@pytest.mark.parametrize("value,endpoints,tls", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_etcd_urls(value, endpoints, tls):
    assert parse_store_url(value) == EtcdLocation(endpoints, tls)


@pytest.mark.parametrize("endpoints,url", [
    ((("127.0.0.1", 2379), ("etcd-b", 12379)), "etcd://127.0.0.1:2379,etcd-b:12379"),
    ((("::1", 2379), ("fd00::2", 12379)), "etcd://[::1]:2379,[fd00::2]:12379"),
])
def test_the_normalised_spelling_for_the_etcd_store(endpoints, url):
    assert EtcdLocation(endpoints, True).url == url
    assert parse_store_url(url) == EtcdLocation(endpoints, False)


# Neither memory: nor a file path is a URL: open_store takes them as they are.
@pytest.mark.parametrize("value", ["memory:", "./netplan.db", "/var/lib/netplan/etcd.db",
                                   "h#frag.db", "etcd", "etcd.db", "a:b.db", "https.db"])
def test_not_urls(value):
    assert parse_store_url(value) is None


# (value, what the error line must say) twins.
REFUSED = [
    # credentials: refused, never shown
    ("etcd://admin:s3cret@127.0.0.1:2379", "--etcd-user"),
    ("etcd://admin:s3cret@[::1]:2379", "--etcd-user"),
    ("https://admin:s3cret@127.0.0.1:2379", "$NETPLAN_ETCD_PASSWORD"),
    ("https://admin:s3cret@[::1]:2379", "$NETPLAN_ETCD_PASSWORD"),
    ("etcd://127.0.0.1:2379,admin:s3cret@127.0.0.2:2379", "credentials"),
    ("etcd://[::1]:2379,admin:s3cret@[::2]:2379", "credentials"),
    ("etcd://s3cret@127.0.0.1:2379", "credentials"),
    ("etcd://s3cret@[::1]:2379", "credentials"),
    ("etcd://ad@min:s3c@ret@127.0.0.1", "credentials"),
    ("etcd://ad@min:s3c@ret@[::1]", "credentials"),
    # whitespace and garbage in an endpoint
    ("etcd://127.0.0.1 :2379", "'127.0.0.1 :2379'"),
    ("etcd://[::1] :2379", "'[::1] :2379'"),
    ("etcd:// 127.0.0.1:2379", "' 127.0.0.1:2379'"),
    ("etcd:// [::1]:2379", "' [::1]:2379'"),
    ("etcd://127.0.0.1:2379\n", "malformed endpoint"),
    ("etcd://[::1]:2379\n", "malformed endpoint"),
    ("etcd://127.0.0.1:23 79", "malformed endpoint"),
    ("etcd://[::1]:23 79", "malformed endpoint"),
    ("etcd://10.0.0.256:2379", "malformed endpoint"),
    ("etcd://[fd00::g]:2379", "malformed endpoint"),
    ("etcd://127.0.0.1:port", "malformed endpoint"),
    ("etcd://[::1]:port", "malformed endpoint"),
    ("etcd://127.0.0.1:", "malformed endpoint"),
    ("etcd://[::1]:", "malformed endpoint"),
    ("etcd://127.0.0.1:0", "port"),
    ("etcd://[::1]:0", "port"),
    ("etcd://127.0.0.1:65536", "port"),
    ("etcd://[::1]:65536", "port"),
    ("etcd://127.0.0.1:２３７９", "malformed endpoint"),  # digits, but not ASCII ones
    ("etcd://[::1]:２３７９", "malformed endpoint"),
    ("etcd://[::1", "malformed endpoint"),
    ("etcd://[::1]2379", "malformed endpoint"),
    ("etcd://[127.0.0.1]:2379", "malformed endpoint"),
    ("etcd://::1:2379", "brackets"),
    ("etcd://fd00::1", "brackets"),
    ("etcd://127.0.0.1:2379,,127.0.0.2:2379", "empty endpoint"),
    ("etcd://[::1]:2379,,[::2]:2379", "empty endpoint"),
    ("etcd://", "names no etcd endpoint"),
    ("https://", "names no etcd endpoint"),
    ("etcd://-bad-.example:2379", "malformed endpoint"),
    ("etcd://a..b:2379", "malformed endpoint"),
    # paths, queries, fragments
    ("etcd://127.0.0.1:2379/v3", "path"),
    ("etcd://[::1]:2379/v3", "path"),
    ("etcd://127.0.0.1:2379?timeout=1", "query"),
    ("etcd://[::1]:2379#x", "fragment"),
    # etcd: and the other schemes without their //
    ("etcd:/127.0.0.1:2379", "etcd://"),
    ("etcd:/[::1]:2379", "etcd://"),
    ("etcd:127.0.0.1:2379", "etcd://"),
    ("etcd:[::1]:2379", "etcd://"),
    ("http:/127.0.0.1:2379", "http://"),
    ("https:[::1]:2379", "https://"),
    ("etcd+https:/127.0.0.1", "etcd+https://"),
    ("etcd:", "etcd://"),
    # unknown schemes, and anything else that looks like a URL
    ("grpc://127.0.0.1:2379", "'grpc://127.0.0.1:2379' is not"),
    ("grpc://[::1]:2379", "'grpc://[::1]:2379' is not"),
    ("etcd+http://127.0.0.1:2379", "is not"),
    ("unix://[::1]:2379", "is not"),
    ("foo://x", "is not"),
    (" etcd://127.0.0.1:2379", "is not"),
    ("./etcd://[::1]:2379", "is not"),
    ("sqlite:///var/lib/netplan.db", "is not"),
]


@pytest.mark.parametrize("value,says", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused(value, says):
    with pytest.raises(InvalidInput) as caught:
        parse_store_url(value)
    line = str(caught.value)
    assert caught.value.field == "--store"
    assert line.startswith("--store: ")
    assert says in line, line
    assert "s3cret" not in line and "s3c" not in line
    assert "\n" not in line


@pytest.mark.parametrize("value,shown", [
    ("grpc://admin:s3cret@127.0.0.1:2379", "grpc://***@127.0.0.1:2379"),
    ("grpc://admin:s3cret@[::1]:2379", "grpc://***@[::1]:2379"),
    ("etcd:/admin:s3cret@127.0.0.1", "etcd:/***@127.0.0.1"),
    ("etcd:admin:s3cret@[::1]", "etcd:***@[::1]"),
])
def test_refused_values_are_shown_with_their_credentials_masked(value, shown):
    with pytest.raises(InvalidInput) as caught:
        parse_store_url(value)
    assert caught.value.value == shown
    assert "s3cret" not in str(caught.value)
