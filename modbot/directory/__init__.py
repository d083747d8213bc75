"""The campus directory: where the address of the person a notification is about is found.

``index`` holds the matching rules every directory shares (``Entry``, ``Index``,
``profile_key``, ``normalize_name``) and the ``Directory`` interface; ``csv`` reads the CSV
export (``CsvDirectory``); ``ldap`` asks the campus LDAP server (``LdapDirectory``, the only
module that imports ldap3); ``combined`` asks both together (``CombinedDirectory``) and builds
the configured one (``open_directory``). The directory is everyone's, never a client list, and
no part of it ever guesses an address.
"""
