"""A project app nested in a package (name ``tests.mixin_app``, label ``mixin_app``), whose pages
use the template mixins the way a project written for the original package does."""
