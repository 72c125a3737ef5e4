"""A user's open sockets follow their sessions: a logout closes that session's sockets; a change to
the user (password, active flag) makes every socket of theirs check its session again; deleting the
user closes them all. Sent after the change is committed, so the check reads it."""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .services import push_to_sockets


@receiver(user_logged_out)
def close_the_sessions_sockets(sender, request, user, **kwargs) -> None:
    if user is not None and request.session.session_key:
        push_to_sockets(user.pk, {"type": "session.ended", "session_key": request.session.session_key})


@receiver(post_save, sender=get_user_model())
def check_the_users_sockets(sender, instance, created, **kwargs) -> None:
    if not created:
        transaction.on_commit(lambda: push_to_sockets(instance.pk, {"type": "session.check"}))


@receiver(post_delete, sender=get_user_model())
def close_the_users_sockets(sender, instance, **kwargs) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: push_to_sockets(user_id, {"type": "session.check"}))
