"""Chat-template fixtures for LoRATemplates, rendered by transformers 5.24's own code (jinja2 3.1.6).

Writes Tests/Fixtures/chat-templates/:
- `<family>.json`: a real chat template (written down below: nothing can be downloaded) and conversations rendered
  with it through `transformers.utils.chat_template_utils.render_jinja_template` (what `apply_chat_template` calls,
  including `return_assistant_tokens_mask`'s generation indices), after `_normalize_chat_messages`; each text is
  also checked against `PreTrainedTokenizerFast.apply_chat_template(tokenize=False)` with a tokenizer built offline.
  A case holds messages, tools, add_generation_prompt, bos/eos tokens, extra variables, and either the expected
  text and `{% generation %}` spans (code point offsets, as transformers records them) or the expected error.
- `snippets.json`: small templates exercising one construct each, rendered by transformers' compiled Jinja
  environment (`_compile_jinja_template`), with the expected text or the Python exception class.

Run: /work/venv/bin/python Tests/Fixtures/make_chat_template_fixtures.py
"""
import json
import os

import jinja2
import transformers
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import (
    _compile_jinja_template,
    _normalize_chat_messages,
    render_jinja_template,
)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat-templates")

# ---------------------------------------------------------------------------------------------------------------
# Templates, as their models ship them (tokenizer_config.json's chat_template).

LLAMA3 = r"""{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>

'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>

' }}{% endif %}"""

LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

QWEN3 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

MISTRAL_V01 = r"""{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

MISTRAL_V03 = r"""{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

SMOLLM2 = r"""{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}"""

CHATML = r"""{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"""

ZEPHYR = r"""{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

GEMMA = r"""{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"""

# The ChatML template with assistant turns in {% generation %} blocks (transformers' own test template).
GENERATION_CHATML = r"""{% for message in messages %}
{% if (message['role'] == 'assistant') %}
{{'<|im_start|>' + message['role'] + '\n'}}{% generation %}{{message['content'] + '<|im_end|>'}}{% endgeneration %}{{'\n'}}
{% else %}
{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
{% endif %}
{% endfor %}
{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"""

# A Llama-3-style template with generation blocks, whitespace control inside them, a macro and a namespace.
GENERATION_LLAMA = r"""{%- macro header(role) -%}
<|start_header_id|>{{ role }}<|end_header_id|>

{% endmacro -%}
{{- bos_token }}
{%- set ns = namespace(turns=0) %}
{%- for message in messages %}
    {{- header(message.role) }}
    {%- if message.role == 'assistant' %}
        {%- set ns.turns = ns.turns + 1 %}
        {%- generation -%}
            {{- message.content | trim }}<|eot_id|>
        {%- endgeneration %}
    {%- else %}
        {{- message.content | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- header('assistant') }}
{%- endif %}"""

# A harmony-style (gpt-oss) template: tools rendered as TypeScript by recursive macros with default arguments,
# dict iteration, `is mapping`, `in`, `|join`, loop.previtem, a namespace and a channel for reasoning.
HARMONY_LIKE = r"""{#- Renders a JSON schema as a TypeScript type -#}
{%- macro render_typescript_type(param_spec, required_params, is_nullable=false) -%}
    {%- if param_spec.type == "array" -%}
        {%- if param_spec['items'] -%}
            {%- if param_spec['items']['type'] == "string" -%}
                {{- "string[]" }}
            {%- elif param_spec['items']['type'] == "number" or param_spec['items']['type'] == "integer" -%}
                {{- "number[]" }}
            {%- else -%}
                {{- render_typescript_type(param_spec['items'], required_params) + "[]" }}
            {%- endif -%}
        {%- else -%}
            {{- "any[]" }}
        {%- endif -%}
        {%- if param_spec.nullable -%}
            {{- " | null" }}
        {%- endif -%}
    {%- elif param_spec.type is defined and param_spec.type is iterable and param_spec.type is not string and param_spec.type is not mapping -%}
        {%- for t in param_spec.type -%}
            {{- render_typescript_type({"type": t}, required_params) }}
            {%- if not loop.last %}{{- " | " }}{%- endif -%}
        {%- endfor -%}
    {%- elif param_spec.enum -%}
        {{- '"' + param_spec.enum | join('" | "') + '"' }}
    {%- elif param_spec.type == "string" -%}
        {{- "string" }}
    {%- elif param_spec.type == "number" or param_spec.type == "integer" -%}
        {{- "number" }}
    {%- elif param_spec.type == "boolean" -%}
        {{- "boolean" }}
    {%- elif param_spec.type == "object" -%}
        {%- if param_spec.properties -%}
            {{- "{\n" }}
            {%- for prop_name, prop_spec in param_spec.properties.items() -%}
                {{- prop_name -}}
                {%- if prop_name not in (param_spec.required or []) -%}{{- "?" }}{%- endif -%}
                {{- ": " }}
                {{- render_typescript_type(prop_spec, param_spec.required or []) }}
                {%- if not loop.last -%}{{- ",\n" }}{%- endif -%}
            {%- endfor -%}
            {{- "\n}" }}
        {%- else -%}
            {{- "object" }}
        {%- endif -%}
    {%- else -%}
        {{- "any" }}
    {%- endif -%}
{%- endmacro -%}

{%- macro render_tool_namespace(namespace_name, tools) -%}
    {{- "## " + namespace_name + "\n\n" }}
    {{- "namespace " + namespace_name + " {\n\n" }}
    {%- for tool in tools %}
        {%- set tool = tool.function %}
        {{- "// " + tool.description + "\n" }}
        {{- "type "+ tool.name + " = " }}
        {%- if tool.parameters and tool.parameters.properties %}
            {{- "(_: {\n" }}
            {%- for param_name, param_spec in tool.parameters.properties.items() %}
                {%- if param_spec.description %}
                    {{- "// " + param_spec.description + "\n" }}
                {%- endif %}
                {{- param_name }}
                {%- if param_name not in (tool.parameters.required or []) -%}
                    {{- "?" }}
                {%- endif -%}
                {{- ": " }}
                {{- render_typescript_type(param_spec, tool.parameters.required or []) }}
                {%- if param_spec.default is defined -%}
                    {{- " // default: " + param_spec.default | tojson }}
                {%- endif -%}
                {%- if not loop.last %}
                    {{- ",\n" }}
                {%- else %}
                    {{- ",\n" }}
                {%- endif -%}
            {%- endfor %}
            {{- "}) => any;\n\n" }}
        {%- else -%}
            {{- "() => any;\n\n" }}
        {%- endif -%}
    {%- endfor %}
    {{- "} // namespace " + namespace_name }}
{%- endmacro -%}

{{- "<|start|>system<|message|>Knowledge cutoff: 2024-06\nCurrent date: " + (current_date | default("2025-06-28")) + "\n\nReasoning: " + (reasoning_effort | default("medium")) + "\n\n# Valid channels: analysis, commentary, final.<|end|>" }}
{%- if messages[0].role == "developer" or messages[0].role == "system" %}
    {%- set developer_message = messages[0].content %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set developer_message = "" %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if developer_message or tools %}
    {{- "<|start|>developer<|message|>" }}
    {%- if developer_message %}
        {{- "# Instructions\n\n" + developer_message + "\n\n" }}
    {%- endif %}
    {%- if tools -%}
        {{- "# Tools\n\n" }}
        {{- render_tool_namespace("functions", tools) }}
    {%- endif -%}
    {{- "<|end|>" }}
{%- endif %}
{%- set ns = namespace(last_user=-1) %}
{%- for message in loop_messages %}
    {%- if message.role == "user" %}{% set ns.last_user = loop.index0 %}{% endif %}
{%- endfor %}
{%- for message in loop_messages -%}
    {%- if message.role == 'assistant' -%}
        {%- if message.tool_calls -%}
            {%- set tool_call = message.tool_calls[0] %}
            {%- if tool_call.function %}{% set tool_call = tool_call.function %}{% endif %}
            {%- if message.thinking %}
                {{- "<|start|>assistant<|channel|>analysis<|message|>" + message.thinking + "<|end|>" }}
            {%- endif %}
            {{- "<|start|>assistant to=functions." + tool_call.name + "<|channel|>commentary json<|message|>" }}
            {{- tool_call.arguments|tojson }}
            {{- "<|call|>" }}
        {%- else -%}
            {%- if message.thinking and loop.index0 > ns.last_user %}
                {{- "<|start|>assistant<|channel|>analysis<|message|>" + message.thinking + "<|end|>" }}
            {%- endif %}
            {{- "<|start|>assistant<|channel|>final<|message|>" + message.content + ("<|return|>" if loop.last else "<|end|>") }}
        {%- endif -%}
    {%- elif message.role == 'tool' -%}
        {%- set previous = loop.previtem %}
        {%- if previous is undefined or previous.role != "assistant" or not previous.tool_calls %}
            {{- raise_exception("Message has tool role, but there was no previous assistant message with a tool call!") }}
        {%- endif %}
        {%- set call = previous.tool_calls[0].function or previous.tool_calls[0] %}
        {{- "<|start|>functions." + call.name + " to=assistant<|channel|>commentary<|message|>" + message.content|tojson + "<|end|>" }}
    {%- elif message.role == 'user' -%}
        {{- "<|start|>user<|message|>" + message.content + "<|end|>" }}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|start|>assistant
{%- endif -%}"""

HARMONY_TOOLS = [
    {"type": "function", "function": {"name": "lookup", "description": "Looks things up", "parameters": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "limits": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}, "unit": {"type": "string", "enum": ["s", "ms"]}}, "required": ["n"]}},
            "mode": {"type": ["string", "null"], "default": "fast"},
            "strict": {"type": "boolean", "default": False},
        },
        "required": ["query"],
    }}},
    {"type": "function", "function": {"name": "now", "description": "The time", "parameters": {"type": "object", "properties": {}}}},
]

# ---------------------------------------------------------------------------------------------------------------
# Conversations

HARD_TEXT = 'Ünïcödé — "quotes", \'apostrophes\', a backslash \\ and <tags> & ampersands 😀\n  second line\t'

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather — in °C or °F",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City, e.g. \"Zürich\""},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1, "default": 1.0},
                },
                "required": ["location"],
            },
            "return": {"type": "string"},
        },
    },
    {
        "type": "function",
        "function": {"name": "noop", "description": "Does nothing", "parameters": {"type": "object", "properties": {}}},
    },
]

SYSTEM = {"role": "system", "content": "You are a careful assistant.  "}
U1 = {"role": "user", "content": "  Hello there!\n"}
A1 = {"role": "assistant", "content": "Hi! How can I help?"}
U2 = {"role": "user", "content": HARD_TEXT}
A2 = {"role": "assistant", "content": "Noted: " + HARD_TEXT}

TOOL_CALL = {
    "role": "assistant",
    "tool_calls": [
        {
            "id": "call12345",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"location": "Zürich \"ZH\"", "unit": "celsius", "days": 2, "scale": 1.5, "deep": {"b": [1, None, True], "a": {}}}},
        }
    ],
    "content": None,
}
TOOL_RESULT = {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 21.5, \"sky\": \"clear ☀\"}"}
A_AFTER_TOOL = {"role": "assistant", "content": "It is 21.5 °C and clear."}


def case(name, messages, add_generation_prompt=False, tools=None, extra=None, bos="<s>", eos="</s>", documents=None):
    return dict(name=name, messages=messages, add_generation_prompt=add_generation_prompt, tools=tools,
                extra=extra or {}, bos_token=bos, eos_token=eos, documents=documents)


BASIC = [
    case("single user", [U1]),
    case("single user, generation prompt", [U1], add_generation_prompt=True),
    case("system and multi-turn", [SYSTEM, U1, A1, U2, A2]),
    case("system and multi-turn, generation prompt", [SYSTEM, U1, A1, U2], add_generation_prompt=True),
    case("no system, multi-turn, unicode and quotes", [U1, A1, U2, A2]),
]

FAMILIES = {
    "llama3": (LLAMA3, BASIC),
    "llama3.1": (LLAMA31, BASIC + [
        case("tools in the user message", [SYSTEM, U1, TOOL_CALL, TOOL_RESULT, A_AFTER_TOOL], tools=TOOLS),
        case("tools in the system message, custom date", [U1, A1, U2], tools=TOOLS, add_generation_prompt=True,
             extra={"tools_in_user_message": False, "date_string": "01 Jan 2025"}),
        case("builtin tools with a python tag call", [SYSTEM, U1, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "brave_search", "arguments": {"query": "weather \"today\"", "lang": "en"}}}]}, {"role": "ipython", "content": {"result": "sunny", "list": [1, 2]}}],
             extra={"builtin_tools": ["code_interpreter", "brave_search", "wolfram_alpha"]}),
        case("tool message with a list content", [U1, {"role": "tool", "content": ["a", 1, 2.0]}]),
        case("two tool calls at once are rejected", [U1, {"role": "assistant", "tool_calls": [TOOL_CALL["tool_calls"][0], TOOL_CALL["tool_calls"][0]]}]),
        case("tools but no user message is rejected", [SYSTEM], tools=TOOLS),
    ]),
    "qwen2.5": (QWEN25, BASIC + [
        case("tools, tool call and result", [SYSTEM, U1, TOOL_CALL, TOOL_RESULT, TOOL_RESULT, A_AFTER_TOOL], tools=TOOLS),
        case("tools without a system message, generation prompt", [U1], tools=TOOLS, add_generation_prompt=True),
        case("assistant content and a tool call without the function wrapper", [U1, {"role": "assistant", "content": "Let me check.", "tool_calls": [{"name": "noop", "arguments": {}}]}]),
    ]),
    "qwen3": (QWEN3, BASIC + [
        case("reasoning content and thinking off", [U1, {"role": "assistant", "content": "Answer.", "reasoning_content": "\nLet me think.\n"}, U2],
             add_generation_prompt=True, extra={"enable_thinking": False}),
        case("think tags in content", [U1, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nDone."}]),
        case("reasoning under the old 'reasoning' key", [U1, {"role": "assistant", "content": "Yes.", "reasoning": "Because."}]),
        case("tools, tool call and tool responses", [SYSTEM, U1, TOOL_CALL, TOOL_RESULT, TOOL_RESULT, A_AFTER_TOOL], tools=TOOLS),
        case("string arguments and a multi-step tool turn", [U1, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "noop", "arguments": "{\"x\": 1}"}}, {"function": {"name": "noop", "arguments": {}}}]}, {"role": "user", "content": "<tool_response>ok</tool_response>"}]),
    ]),
    "mistral-v0.1": (MISTRAL_V01, BASIC[:1] + [
        case("system and multi-turn", [SYSTEM, U1, A1, U2, A2]),
        case("no system, multi-turn", [U1, A1, U2, A2]),
        case("roles that do not alternate are rejected", [U1, U2]),
        case("an unknown role is rejected", [U1, A1, {"role": "narrator", "content": "x"}]),
    ]),
    "mistral-v0.3": (MISTRAL_V03, [
        case("system and multi-turn", [SYSTEM, U1, A1, U2, A2]),
        case("tools, tool call and result", [U1, TOOL_CALL, TOOL_RESULT, A_AFTER_TOOL, U2], tools=TOOLS),
        case("tool result content as a mapping", [U1, TOOL_CALL, {"role": "tool", "tool_call_id": "call12345", "content": {"content": "42"}}]),
        case("a tool call id of the wrong length is rejected", [U1, {"role": "assistant", "tool_calls": [{"id": "short", "function": {"name": "noop", "arguments": {}}}]}]),
        case("roles that do not alternate are rejected", [U1, A1, A2]),
    ]),
    "smollm2": (SMOLLM2, BASIC),
    "chatml": (CHATML, BASIC),
    "zephyr": (ZEPHYR, BASIC),
    "gemma": (GEMMA, BASIC[:1] + [
        case("multi-turn, generation prompt", [U1, A1, U2], add_generation_prompt=True),
        case("a system message is rejected", [SYSTEM, U1]),
        case("roles that do not alternate are rejected", [U1, A1, A2]),
    ]),
    "generation-chatml": (GENERATION_CHATML, BASIC + [
        case("assistant first", [A1, U1, A2]),
    ]),
    "generation-llama": (GENERATION_LLAMA, BASIC),
    "harmony-like": (HARMONY_LIKE, BASIC + [
        case("tools, reasoning, a tool call and its result", [SYSTEM, U1, {"role": "assistant", "thinking": "Need a lookup.", "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": {"query": "ß", "tags": ["a"]}}}]}, {"role": "tool", "content": "{\"found\": true}"}, {"role": "assistant", "content": "Found it.", "reasoning_content": "It was there."}],
             tools=HARMONY_TOOLS, extra={"reasoning_effort": "high", "current_date": "2025-01-02"}),
        case("a tool result without a call is rejected", [U1, {"role": "tool", "content": "x"}]),
        case("tools only, generation prompt", [U1], tools=HARMONY_TOOLS, add_generation_prompt=True),
    ]),
}


def error_of(exc):
    if isinstance(exc, jinja2.exceptions.UndefinedError):
        kind = "undefined"
    elif isinstance(exc, jinja2.exceptions.SecurityError):
        kind = "security"
    elif type(exc) is jinja2.exceptions.TemplateError:
        kind = "raised"
    elif isinstance(exc, jinja2.exceptions.TemplateSyntaxError):
        kind = "syntax"
    else:
        kind = type(exc).__name__
    return {"kind": kind, "message": str(exc)}


def offline_tokenizer(template):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                   bos_token="<s>", eos_token="</s>", unk_token="<unk>", chat_template=template)


def render_family(template, cases):
    tokenizer = offline_tokenizer(template)
    out = []
    for c in cases:
        record = {k: c[k] for k in ("name", "messages", "tools", "documents", "add_generation_prompt", "bos_token",
                                    "eos_token", "extra")}
        messages = _normalize_chat_messages(json.loads(json.dumps(c["messages"])))
        try:
            texts, indices = render_jinja_template(
                conversations=[messages], tools=c["tools"], documents=c["documents"], chat_template=template,
                return_assistant_tokens_mask=True, add_generation_prompt=c["add_generation_prompt"],
                bos_token=c["bos_token"], eos_token=c["eos_token"], **c["extra"])
            record["expected"] = texts[0]
            record["generation_spans"] = [list(span) for span in indices[0]]
            record["error"] = None
            via_tokenizer = tokenizer.apply_chat_template(
                c["messages"], tools=c["tools"], documents=c["documents"], tokenize=False,
                add_generation_prompt=c["add_generation_prompt"], **c["extra"])
            assert via_tokenizer == texts[0], (c["name"], via_tokenizer, texts[0])
        except Exception as exc:  # noqa: BLE001 - every failure is recorded as the expected error
            if isinstance(exc, AssertionError):
                raise
            record["expected"] = None
            record["generation_spans"] = None
            record["error"] = error_of(exc)
        out.append(record)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Snippets: one construct each, rendered by transformers' Jinja environment.

S = []


def snip(template, **context):
    S.append((template, context))


# whitespace control, trim_blocks, lstrip_blocks, comments, raw, trailing newline
snip("  {% if true %}\n  x\n  {% endif %}\n")
snip("a\n  {# c #}\nb\n")
snip("{{ 'a' }}\n")
snip("{{ 'a' }}\n\n")
snip("a  {%- if true -%}  b  {%- endif -%}  c")
snip("a\n    {%+ if true %}b{% endif +%}\nc")
snip("x {{- ' y ' -}} z")
snip("{% for i in [1, 2] %}\n    {{ i }}\n{% endfor %}\n")
snip("line\n\t {% set x = 1 %}\n{{ x }}")
snip("{% raw %}{{ not evaluated }} {% if %}{% endraw %}")
snip("a\r\nb\r\n{% if true %}\r\nc{% endif %}")
snip("{#- comment -#}  \n  text")
snip("x {{ 1 }} {% if true %}   {% endif %}  y")
snip("{% if true %}  a  {% endif %}")
snip("\n  {%- if true %}\n  a\n  {%- endif %}\n")
# literals and output
snip("{{ none }}|{{ true }}|{{ false }}|{{ 1.0 }}|{{ [1, 'a', none, 1.5, {'k': \"it's\"}] }}|{{ {'a': 1} }}|{{ (1,) }}|{{ (1, 2) }}")
snip("{{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1/3 }} {{ 2.5e-10 }} {{ 123456789.125 }} {{ -0.0 }} {{ 1_000 }}")
snip("{{ \"a\" 'b' }}{{ '\\n' | length }}{{ '\\u00e9\\x41\\101' }}{{ 'it\\'s' }}{{ 'back\\\\slash\\q' }}")
snip("{{ 'x' * 3 }}{{ [0] * 2 }}{{ 3 * 'y' }}")
snip("{{ x }}|{{ y }}", x=['ü', "qu'ote", 'dq"', 'both\'"', 'nl\n', '\x07'], y={"k": [1.5, True, None]})
# arithmetic and comparisons
snip("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 7 / 7 }} {{ 5 / 2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** -1 }}")
snip("{{ 1 == 1.0 }}{{ true == 1 }}{{ 'a' < 'b' }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ [1, 2] == [1, 2] }}{{ (1, 2) == [1, 2] }}{{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }}")
snip("{{ 'a' in 'cat' }}{{ 'k' in {'k': 1} }}{{ 3 not in [1, 2] }}{{ not true }}{{ true and 'x' }}{{ false or 0 }}{{ none or 'd' }}")
snip("{{ 1 + 2 * 3 - 4 / 2 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 'a' ~ 1 ~ none ~ true }} {{ 1 ~ 2 * 3 }} {{ 2 ** 3 ** 2 }}")
snip("{{ 1 ~ 2 + 3 }}")
snip("{{ [1, 2] + [3] }}{{ 'ab' + 'cd' }}{{ -x }}{{ +x }}", x=3)
snip("{{ 1 + 'a' }}")
snip("{{ 1 / 0 }}")
snip("{{ 'a' < 1 }}")
snip("{{ 1 in 'abc' }}")
snip("{{ x + 1 }}")
# conditionals
snip("{% if a %}A{% elif b %}B{% else %}C{% endif %}|{% if not a and b %}nb{% endif %}", a=0, b=[1])
snip("{{ 'y' if x else 'n' }}|{{ 'y' if false }}|{{ 'a' if false else 'b' if true else 'c' }}", x="s")
# loops
snip("{% for x in [1, 2, 3, 4] if x % 2 == 0 %}{{ loop.index }}/{{ loop.length }}{{ loop.last }}{% endfor %}")
snip("{% for x in 'abc' %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}")
snip("{% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }}:{{ loop.cycle('a', 'b') }} {% endfor %}")
snip("{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }}{% endfor %}")
snip("{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }}{% endfor %}{% for (a, b) in [(5, 6)] %}{{ a + b }}{% endfor %}")
snip("{% for x in [] %}a{% else %}empty{% endfor %}|{% for x in missing %}a{% else %}none{% endfor %}")
snip("{% for x in [1, 2] if x > 5 %}a{% else %}filtered{% endfor %}")
snip("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}")
snip("{% for i in [1, 2] %}{% for j in 'ab' %}{{ loop.index }}{{ i }}{{ j }} {% endfor %}{{ loop.index }};{% endfor %}")
snip("{% for x in none %}{% endfor %}")
snip("{% for x in 5 %}{% endfor %}")
snip("{% for a, b in [[1, 2, 3]] %}{% endfor %}")
# scoping, set, namespace, macros
snip("{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}")
snip("{% for i in [1, 2] %}{% if i == 2 %}[{{ y }}]{% endif %}{% set y = i %}{% endfor %}[{{ y }}]")
snip("{% if true %}{% set z = 5 %}{% endif %}{{ z }}")
snip("{% set ns = namespace(a=1, b='x') %}{% for i in [1, 2] %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}{{ ns.b }}{{ ns.c }}")
snip("{% set ns = namespace() %}{% set ns.items = [1] %}{% set ns.items = ns.items + [2] %}{{ ns.items }}{{ ns['items'] }}")
snip("{% set ns = namespace({'k': 1}, j=2) %}{{ ns.k }}{{ ns.j }}")
snip("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = 3, 4 %}{{ c }}")
snip("{% set x %}inner {{ 1 }}{% endset %}[{{ x }}]{% set y | upper | trim %} text {% endset %}[{{ y }}]")
snip("{% set x = 5 %}{% macro m() %}{{ x }}{{ z }}{% endmacro %}{% set z = 3 %}{{ m() }}")
snip("{% macro m(a, b='B', c=a) %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}{{ m() }}")
snip("{% macro rec(n) %}{{ n }}{% if n > 0 %}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(3) }}")
snip("{% macro m(a) %}{% set a = a ~ '!' %}{{ a }}{% endmacro %}{% set a = 'outer' %}{{ m('in') }}{{ a }}")
snip("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}")
snip("{% set ns = none %}{% set ns.x = 1 %}")
snip("{% set ns = namespace() %}{% set ns._private = 1 %}")
# attribute and item access, slicing
snip("{{ d.a }}{{ d['a'] }}{{ d.missing }}|{{ d['missing'] }}|{{ d.nested.b }}{{ d['nested']['b'] }}{{ l[0] }}{{ l[-1] }}{{ l[5] }}|{{ s[0] }}{{ s[-1] }}{{ s[10] }}|{{ l.0 }}",
     d={"a": 1, "nested": {"b": 2}}, l=[1, 2, 3], s="héllo")
snip("{{ d['items'] }}{{ d.get('items') }}", d={"items": 7})
snip("{{ 'abc'[::-1] }}{{ [1, 2, 3][1:] }}{{ [1, 2, 3][:-1] }}{{ 'abcdef'[1:5:2] }}{{ [1, 2, 3, 4][::2] }}{{ 'abc'[5:] }}{{ [1, 2, 3][-2:] }}{{ 'abcdef'[4:1:-1] }}{{ 'abc'[-10:10] }}")
snip("{{ messages[1:] | length }}{{ messages[::-1][0].role }}", messages=[{"role": "a"}, {"role": "b"}])
snip("{{ missing.attribute }}")
snip("{{ missing['key'] }}")
snip("{{ 'x'.foo }}|{{ d.x.y }}", d={"x": 1})
snip("{{ 'x'.foo.bar }}")
snip("{{ [1, 2][5].x }}")
snip("{{ x.append(1) }}", x=[])
snip("{{ d.update({}) }}", d={})
snip("{{ d.__class__ }}|{{ d.append is defined }}", d=[])
# undefined behaviour
snip("[{{ missing }}]{{ missing | length }}{{ missing ~ 'x' }}{{ missing | trim }}{{ missing == none }}{{ missing is none }}{{ missing | default('d') }}{{ missing is iterable }}{{ missing is sequence }}{{ missing is string }}{{ 'a' in missing }}")
snip("{{ missing + 'x' }}")
snip("{{ missing | tojson }}")
snip("{{ missing() }}")
snip("{{ missing | upper }}{{ missing | string }}{{ missing | list }}{{ missing | join(',') }}{{ missing | items | list }}{% if missing %}t{% else %}f{% endif %}")
# tests
snip("{{ 'x' is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ 1.0 is float }}{{ {} is iterable }}{{ 'a' is sequence }}{{ {} is sequence }}{{ none is mapping }}{{ {} is mapping }}{{ 5 is iterable }}")
snip("{{ 1 is odd }}{{ 2 is even }}{{ none is none }}{{ x is defined }}{{ x is undefined }}{{ true is true }}{{ 1 is true }}{{ false is boolean }}{{ 'a' is string }}{{ 1 is not string }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}")
snip("{{ 'a' is eq 'a' }}{{ 1 is equalto 2 }}{{ 1 is ne 2 }}{{ 2 is gt 1 }}{{ 2 is ge 2 }}{{ 1 is lt 2 }}{{ 1 is le 0 }}{{ 1 is in [1] }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ range is callable }}{{ none is sameas none }}")
snip("{{ not x is defined }}{{ x is not defined and true }}{{ (x is defined) or 'f' }}")
snip("{{ 1 is foo }}")
# filters
snip("{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'abc' | upper }}{{ 'ABC' | lower }}{{ 'hello WORLD-wide (big)' | title }}{{ 'hELLO wORLD' | capitalize }}")
snip("{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(ensure_ascii=true) }}|{{ x | tojson(separators=(',', ':')) }}|{{ x | tojson(sort_keys=true) }}",
     x={"b": [1, 2.5, None, True, "é\"<>&'\n\t\x01 😀"], "a": {}, "c": [], "d": 1e20, "e": -0.0})
snip("{{ [1, 2, 3] | length }}{{ 'abc' | count }}{{ {'a': 1} | length }}{{ 'é' | length }}")
snip("{{ x | default('d') }}{{ none | default('d') }}{{ '' | default('d', true) }}{{ x | d('q') }}{{ 0 | default('z', boolean=true) }}")
snip("{{ [1, 2] | join(', ') }}|{{ ['a', none, 1] | join }}|{{ users | join(', ', attribute='name') }}", users=[{"name": "a"}, {"name": "b"}])
snip("{{ 'abc' | replace('b', 'X') }}{{ 'aaa' | replace('a', 'b', 2) }}{{ 'ab' | replace('', '-') }}{{ 5 | replace('5', 'five') }}")
snip("{{ {'a': 1, 'b': 2} | items | list }}{% for k, v in {'x': 1} | items %}{{ k }}{{ v }}{% endfor %}")
snip("{{ 'ab' | list }}{{ {'a': 1} | list }}{{ [1, 2] | first }}{{ [1, 2] | last }}{{ 'ab' | last }}{{ [] | first }}|{{ {'k': 1} | first }}")
snip("{{ 3 | string }}{{ '3' | int + 1 }}{{ 'x' | int }}{{ '2.5' | float }}{{ 3.7 | int }}{{ ' 42 ' | int }}{{ '3.9' | int }}{{ 'x' | int(7) }}{{ 3 | float }}{{ 'ff' | int(base=16) }}{{ true | int }}")
snip("{{ x | selectattr('role', 'equalto', 'user') | map(attribute='c') | list }}{{ x | rejectattr('role', 'equalto', 'user') | list }}", x=[{"role": "user", "c": 1}, {"role": "a", "c": 2}])
snip("{{ x | selectattr('flag') | list }}{{ x | rejectattr('flag') | list }}", x=[{"flag": True}, {"flag": False}, {}])
snip("{{ x | map(attribute='n', default='?') | list }}{{ ['a', 'b'] | map('upper') | list }}{{ [1, 2, 3] | select('odd') | list }}{{ [1, 2, 3] | reject('odd') | list }}{{ [1, 2, 3] | select('gt', 1) | list }}",
     x=[{"n": 1}, {}])
snip("{{ x | map(attribute='a.b') | list }}{{ x | selectattr('a.b', 'defined') | list | length }}", x=[{"a": {"b": 1}}, {"a": {}}])
snip("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}|{{ 'x' | indent }}")
snip("{{ [3, 1, 2] | sort }}{{ ['b', 'A', 'c'] | sort }}{{ ['b', 'A', 'c'] | sort(case_sensitive=true) }}{{ [3, 1, 2] | sort(reverse=true) }}{{ x | sort(attribute='k') | map(attribute='k') | list }}",
     x=[{"k": 2}, {"k": 1}])
snip("{{ [1, 2, 2, 'a', 'A'] | unique | list }}{{ [1, 2, 3] | sum }}{{ [1, 5, 3] | max }}{{ [4, 2, 8] | min }}{{ 'abc' | reverse }}{{ [1, 2] | reverse | list }}{{ -3 | abs }}{{ 2.5 | round }}{{ 3.14159 | round(2) }}{{ 2.1 | round(method='ceil') }}")
snip("{{ '<a href=\"x\">&</a>' | e }}{{ 'x' | safe }}{{ 'one two  three' | wordcount }}{{ 'ab' | center(6) }}|{{ {'b': 1, 'a': 2} | dictsort }}")
snip("{{ 'x' | foo }}")
snip("{{ 5 | length }}")
# string and dict methods
snip("{{ 'a b  c'.split() }}{{ 'a,b,,c'.split(',') }}{{ 'a,b,c'.split(',', 1) }}{{ 'a,b,c'.rsplit(',', 1) }}{{ ' x '.strip() }}{{ 'xxaxx'.strip('x') }}{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ '\\n\\nx\\n'.lstrip('\\n') }}")
snip("{{ 'abc'.startswith('a') }}{{ 'abc'.endswith(('c', 'd')) }}{{ 'abc'.startswith('b') }}{{ 'a-b-c'.replace('-', '+') }}{{ 'a-b-c'.replace('-', '', 1) }}{{ 'ABC'.lower() }}{{ 'abc'.upper() }}{{ 'hello world'.title() }}{{ \"they're 2nd\".title() }}")
snip("{{ 'abcb'.find('b') }}{{ 'abcb'.rfind('b') }}{{ 'abc'.find('z') }}{{ 'abcb'.count('b') }}{{ ', '.join(['a', 'b']) }}{{ '123'.isdigit() }}{{ 'ab'.isalpha() }}{{ ' '.isspace() }}{{ 'a\\nb'.splitlines() }}{{ 'pre-x'.removeprefix('pre-') }}")
snip("{{ x.get('a') }}{{ x.get('z', 'd') }}{{ x.get('z') }}{{ x.keys() | list }}{{ x.values() | list }}{{ x.items() | list }}", x={"a": 1, "b": 2})
snip("{{ '<think>\\nabc\\n</think>\\n\\nanswer'.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}|{{ '<think>x</think>\\n\\nanswer'.split('</think>')[-1].lstrip('\\n') }}")
# globals
snip("{{ range(3) | list }}{{ range(1, 7, 2) | list }}{{ range(5, 0, -2) | list }}{{ range(0) | list }}{% for i in range(2) %}{{ i }}{% endfor %}")
snip("{{ dict(a=1, b='x') }}{{ dict({'k': 1}) }}")
snip("{{ raise_exception('bad thing: ' ~ 42) }}")
snip("{% if true %}{{ raise_exception('inside an if') }}{% endif %}")
snip("{{ range(200000) | length }}")
# generation blocks: spans start at the root output's length when the block ends (macros and set blocks capture)
snip("a{% generation %}bc{% endgeneration %}d{%- generation -%}  e  {% endgeneration %}")
snip("{% macro m(x) %}[{% generation %}{{ x }}{% endgeneration %}]{% endmacro %}ab{{ m('cd') }}{{ m('é😀') }}")
snip("ab{% set s %}x{% generation %}yz{% endgeneration %}{% endset %}{{ s }}|{% generation %}q{% endgeneration %}")
snip("{% for i in [1, 2] %}-{% generation %}{{ i }}{% if i == 2 %}{% generation %}in{% endgeneration %}{% endif %}{% endgeneration %}{% endfor %}")
snip("{% generation %}{% set x = 1 %}{% endgeneration %}[{{ x }}]")
snip("{% for m in ['x', 'y'] %}{% generation %}{{ m }}{% if loop.first %}{% continue %}{% endif %}!{% endgeneration %}{% endfor %}")
# syntax errors
snip("{{ 1 + }}")
snip("{% if true %}unterminated")
snip("{{ 'unterminated string }}")
snip("{{ x ")
snip("{% for x in y %}{% endif %}")
snip("{% endfor %}")
snip("{# never closed")
snip("{% foo %}")
snip("{{ (1, 2 }}")
snip("{% break %}")


def render_snippets():
    out = []
    for template, context in S:
        record = {"template": template, "context": context}
        try:
            compiled = _compile_jinja_template(template)
            blocks, spans = [], []
            with compiled.environment.activate_tracker(blocks, spans):
                for block in compiled.generate(**context):
                    blocks.append(block)
            record["expected"] = "".join(blocks)
            assert record["expected"] == compiled.render(**context)
            record["generation_spans"] = [list(span) for span in spans]
            record["error"] = None
        except Exception as exc:  # noqa: BLE001
            record["expected"] = None
            record["error"] = error_of(exc)
        out.append(record)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    assert transformers.__version__.startswith("5."), transformers.__version__
    for name, (template, cases) in FAMILIES.items():
        doc = {"family": name, "transformers": transformers.__version__, "jinja2": jinja2.__version__,
               "template": template, "cases": render_family(template, cases)}
        with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        errors = sum(1 for c in doc["cases"] if c["error"])
        print(f"{name}: {len(cases)} cases, {errors} expected errors")
    snippets = render_snippets()
    with open(os.path.join(OUT, "snippets.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "jinja2": jinja2.__version__, "snippets": snippets},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"snippets: {len(snippets)}, {sum(1 for s in snippets if s['error'])} expected errors")


if __name__ == "__main__":
    main()
