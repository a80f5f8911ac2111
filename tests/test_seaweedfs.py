"""The S3 server the storage-s3 tests run against: SeaweedFS from PyPI on free
loopback ports, and the independent S3 client the tests look at buckets with."""


def test_objects_round_trip_and_list_in_pages(s3_area):
    s3_area.put("a/one.txt", b"1")
    s3_area.put("a/two words.txt", b"22")
    s3_area.put("b/Grüße.txt", "ü".encode())
    assert sorted(s3_area.keys()) == ["a/one.txt", "a/two words.txt", "b/Grüße.txt"]
    assert s3_area.get("a/two words.txt") == b"22"
    assert s3_area.get("missing") is None


def test_unfinished_multipart_uploads_are_visible(s3_area):
    client = s3_area.client
    status, _, body = client.request(
        "POST", s3_area.bucket, s3_area.prefix + "big.bin", query={"uploads": ""}
    )
    assert status == 200, body
    assert s3_area.uploads() == ["big.bin"]


def test_a_second_gateway_serves_the_same_store(seaweedfs, s3_area):
    s3_area.put("shared.txt", b"seen by both")
    other = seaweedfs.gateway()
    assert other.port != s3_area.client.port
    assert other.get(s3_area.bucket, s3_area.prefix + "shared.txt") == b"seen by both"


def test_signatures_are_checked(seaweedfs, s3_area):
    from seaweedfs import S3Client

    wrong = S3Client(seaweedfs.s3_port, secret_key="not the secret")
    status, _, _ = wrong.request("GET", s3_area.bucket, s3_area.prefix + "x")
    assert status == 403
