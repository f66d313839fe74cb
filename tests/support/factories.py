"""factory_boy factories for tenants, users with a membership, API keys and memories."""

import factory
from django.contrib.auth import get_user_model

from accounts.models import Membership, Role, Tenant
from accounts.principal import Principal
from accounts.services import api_key_create
from memories.models import Memory, Visibility

PASSWORD = "correct horse battery staple"


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())


class UserFactory(factory.django.DjangoModelFactory):
    """A user with a membership: UserFactory(membership__tenant=t, membership__role="guest")."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    password = factory.django.Password(PASSWORD)
    membership = factory.RelatedFactory("tests.support.factories.MembershipFactory", factory_related_name="user")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory, membership=None)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.MEMBER


class MemoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Memory

    owner = factory.SubFactory(UserFactory)
    tenant = factory.LazyAttribute(lambda m: m.owner.membership.tenant)
    title = factory.Faker("sentence", nb_words=4)
    content = factory.Faker("paragraph")
    tags = factory.LazyFunction(lambda: ["notes"])
    visibility = Visibility.TEAM


def principal(user) -> Principal:
    """The principal of a user, as authentication would resolve it."""
    return Principal.from_membership(Membership.objects.select_related("user", "tenant").get(user=user))


def api_key(user) -> str:
    """A fresh full API key for the user."""
    return api_key_create(user=user, name="test")[1]
