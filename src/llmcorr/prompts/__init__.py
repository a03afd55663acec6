"""Prompt templates: sandboxed Jinja files whose body holds `system:` / `user:` / `assistant:` role markers."""

from .render import PromptTemplate, load_template, parse_messages

__all__ = ["PromptTemplate", "load_template", "parse_messages"]
