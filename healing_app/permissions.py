"""Who may review: the permission to approve, reject and deploy code, and the reviewers group that has it
(created here too, for code that must not rely on migration data: tests, setup)."""

from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.contenttypes.models import ContentType

REVIEWERS = "reviewers"
REVIEW_PERMISSION = "healing_app.review_healingevent"


def can_review(user: AbstractBaseUser | None) -> bool:
    """Approving or rejecting a heal and deploying a version are a reviewer's call."""
    return bool(user is not None and user.is_authenticated and user.has_perm(REVIEW_PERMISSION))


def reviewers_group() -> Group:
    """The 'reviewers' group with the permission to approve and reject, created when missing."""
    from healing_app.models import HealingEvent

    group, _ = Group.objects.get_or_create(name=REVIEWERS)
    event_type = ContentType.objects.get_for_model(HealingEvent)
    for codename, name in (
        ("review_healingevent", "Can approve or reject healing events"),
        ("view_healingevent", "Can view healing event"),
    ):
        permission, _ = Permission.objects.get_or_create(
            codename=codename, content_type=event_type, defaults={"name": name}
        )
        group.permissions.add(permission)
    return group
