# An empty repository without a stanza and onNoBackup = "initdb": PostgreSQL initialises a new
# cluster; then stanza-create and a first backup succeed, and that backup restores.
{common}:
common.standard {name = "first-deploy";}
