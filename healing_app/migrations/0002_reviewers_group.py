from django.db import migrations


def create_reviewers(apps, schema_editor):
    # Permissions are normally created after all migrations have run; create ours now so the group can hold it.
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    event_type, _ = ContentType.objects.get_or_create(app_label="healing_app", model="healingevent")
    permissions = [
        Permission.objects.get_or_create(
            codename=codename, content_type=event_type, defaults={"name": name}
        )[0]
        for codename, name in (
            ("review_healingevent", "Can approve or reject healing events"),
            ("view_healingevent", "Can view healing event"),
        )
    ]
    group, _ = Group.objects.get_or_create(name="reviewers")
    group.permissions.add(*permissions)


def remove_reviewers(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="reviewers").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("healing_app", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewers, remove_reviewers)]
