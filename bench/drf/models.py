"""A minimal model for the bare DRF create endpoint."""

from django.db import models


class Note(models.Model):
    """A title and some text: about what a memory's create stores, without the product's rules."""

    title = models.CharField(max_length=200)
    content = models.TextField(blank=True)
    visibility = models.CharField(max_length=16, default="team")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.title
