"""peft_integration."""
