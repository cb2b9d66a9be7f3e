# ruff: noqa: E501
"""Chat templates of the tiny GLM-4.5, DeepSeek-R1 (Qwen distill), Phi-4-mini and gpt-oss test models.

Written after the official ``tokenizer_config.json`` templates, keeping the markers the engine parses
(tool listings, tool calls, tool results, reasoning blocks), with their known bugs fixed: the R1 template
closes a single tool call and prompts the assistant after tool outputs, and nothing depends on the date.
"""

from __future__ import annotations

# GLM-4.5/4.6: [gMASK]<sop> prefix, tools listed in a <|system|> turn, calls as
# <tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>, results after <|observation|>
# inside <tool_response>; reasoning kept only after the last user turn; enable_thinking=false closes an
# empty <think></think> block in the generation prompt.
GLM4_CHAT_TEMPLATE = r"""[gMASK]<sop>
{%- if tools -%}
<|system|>
# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{% for tool in tools %}
{{ tool | tojson(ensure_ascii=False) }}
{% endfor %}
</tools>

For each function call, output the function name and arguments within the following XML format:
<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}</arg_value><arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>...</tool_call>
{%- endif -%}
{%- macro visible_text(content) -%}
    {%- if content is string -%}
        {{- content }}
    {%- elif content is iterable and content is not mapping -%}
        {%- for item in content -%}
            {%- if item is mapping and item.type == 'text' -%}
                {{- item.text }}
            {%- elif item is string -%}
                {{- item }}
            {%- endif -%}
        {%- endfor -%}
    {%- elif content is not none -%}
        {{- content }}
    {%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(last_user_index=-1) -%}
{%- for m in messages -%}
    {%- if m.role == 'user' -%}
        {%- set ns.last_user_index = loop.index0 -%}
    {%- endif -%}
{%- endfor -%}
{%- for m in messages -%}
    {%- if m.role == 'user' -%}
        {{- '<|user|>\n' + visible_text(m.content) -}}
        {{- '/nothink' if (enable_thinking is defined and not enable_thinking and not visible_text(m.content).endswith('/nothink')) else '' -}}
    {%- elif m.role == 'assistant' -%}
        {{- '<|assistant|>' -}}
        {%- set reasoning_content = '' -%}
        {%- set content = visible_text(m.content) -%}
        {%- if m.reasoning_content is string -%}
            {%- set reasoning_content = m.reasoning_content -%}
        {%- elif '</think>' in content -%}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') -%}
            {%- set content = content.split('</think>')[-1].lstrip('\n') -%}
        {%- endif -%}
        {%- if loop.index0 > ns.last_user_index and reasoning_content -%}
            {{- '\n<think>' + reasoning_content.strip() + '</think>' -}}
        {%- else -%}
            {{- '\n<think></think>' -}}
        {%- endif -%}
        {%- if content.strip() -%}
            {{- '\n' + content.strip() -}}
        {%- endif -%}
        {%- if m.tool_calls -%}
            {%- for tc in m.tool_calls -%}
                {%- if tc.function -%}
                    {%- set tc = tc.function -%}
                {%- endif -%}
                {{- '\n<tool_call>' + tc.name -}}
                {%- if tc.arguments is mapping -%}
                    {%- for k, v in tc.arguments.items() -%}
                        {{- '<arg_key>' + k + '</arg_key><arg_value>' -}}
                        {{- v if v is string else (v | tojson(ensure_ascii=False)) -}}
                        {{- '</arg_value>' -}}
                    {%- endfor -%}
                {%- elif tc.arguments -%}
                    {{- tc.arguments -}}
                {%- endif -%}
                {{- '</tool_call>' -}}
            {%- endfor -%}
        {%- endif -%}
    {%- elif m.role == 'tool' -%}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}
            {{- '<|observation|>' -}}
        {%- endif -%}
        {{- '<tool_response>' + visible_text(m.content) + '</tool_response>' -}}
    {%- elif m.role == 'system' -%}
        {{- '<|system|>\n' + visible_text(m.content) -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>' -}}
    {{- '\n<think></think>' if (enable_thinking is defined and not enable_thinking) else '' -}}
{%- endif -%}"""

# DeepSeek-R1-Distill-Qwen: system prompt straight after BOS, full-width-bar role and tool markers, earlier
# reasoning dropped from assistant turns, and a generation prompt that opens the reasoning block.
DEEPSEEK_R1_CHAT_TEMPLATE = r"""{%- if not add_generation_prompt is defined -%}
    {%- set add_generation_prompt = false -%}
{%- endif -%}
{%- set ns = namespace(is_tool=false, is_output_first=true, system_prompt='') -%}
{%- for message in messages -%}
    {%- if message['role'] == 'system' -%}
        {%- set ns.system_prompt = message['content'] -%}
    {%- endif -%}
{%- endfor -%}
{{- bos_token + ns.system_prompt -}}
{%- if tools -%}
    {{- '\n\n## Tools\n\nYou have the following functions available:\n' -}}
    {%- for tool in tools -%}
        {%- set fn = tool.function if tool.function is defined else tool -%}
        {{- '\n- `' + fn.name + '`:\n```json\n' + (fn | tojson) + '\n```\n' -}}
    {%- endfor -%}
{%- endif -%}
{%- for message in messages -%}
    {%- if message['role'] == 'user' -%}
        {%- if ns.is_tool -%}
            {{- '<｜tool▁outputs▁end｜>' -}}
        {%- endif -%}
        {%- set ns.is_tool = false -%}
        {%- set ns.is_output_first = true -%}
        {{- '<｜User｜>' + message['content'] -}}
    {%- elif message['role'] == 'assistant' -%}
        {%- if ns.is_tool -%}
            {{- '<｜tool▁outputs▁end｜>' -}}
        {%- endif -%}
        {%- set ns.is_tool = false -%}
        {%- set ns.is_output_first = true -%}
        {%- set content = message['content'] or '' -%}
        {%- if '</think>' in content -%}
            {%- set content = content.split('</think>')[-1] -%}
        {%- endif -%}
        {{- '<｜Assistant｜>' + content -}}
        {%- if message['tool_calls'] -%}
            {{- '<｜tool▁calls▁begin｜>' -}}
            {%- for tool in message['tool_calls'] -%}
                {%- set args = tool['function']['arguments'] -%}
                {%- if not loop.first -%}
                    {{- '\n' -}}
                {%- endif -%}
                {{- '<｜tool▁call▁begin｜>' + (tool['type'] or 'function') + '<｜tool▁sep｜>' + tool['function']['name'] -}}
                {{- '\n```json\n' + (args if args is string else (args | tojson)) + '\n```<｜tool▁call▁end｜>' -}}
            {%- endfor -%}
            {{- '<｜tool▁calls▁end｜>' -}}
        {%- endif -%}
        {{- '<｜end▁of▁sentence｜>' -}}
    {%- elif message['role'] == 'tool' -%}
        {%- set ns.is_tool = true -%}
        {%- if ns.is_output_first -%}
            {{- '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>' -}}
            {%- set ns.is_output_first = false -%}
        {%- else -%}
            {{- '\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>' -}}
        {%- endif -%}
    {%- endif -%}
{%- endfor -%}
{%- if ns.is_tool -%}
    {{- '<｜tool▁outputs▁end｜>' -}}
{%- endif -%}
{%- if add_generation_prompt -%}
    {{- '<｜Assistant｜><think>\n' -}}
{%- endif -%}"""

# Phi-4-mini-instruct: <|role|>content<|end|> turns; tools as a JSON list between <|tool|> and <|/tool|>
# in the system turn, calls as a JSON list inside <|tool_call|>…<|/tool_call|>, results in a
# <|tool_response|> turn.
PHI4_CHAT_TEMPLATE = r"""{%- set ns = namespace(fns=[], system_done=false) -%}
{%- if tools -%}
    {%- for tool in tools -%}
        {%- set ns.fns = ns.fns + [tool.function if tool.function is defined else tool] -%}
    {%- endfor -%}
{%- endif -%}
{%- if tools and (not messages or messages[0]['role'] != 'system') -%}
    {{- '<|system|>You are a helpful assistant with some tools.<|tool|>' + (ns.fns | tojson) + '<|/tool|><|end|>' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message['role'] == 'system' -%}
        {{- '<|system|>' + message['content'] -}}
        {%- if tools -%}
            {{- '<|tool|>' + (ns.fns | tojson) + '<|/tool|>' -}}
        {%- elif message['tools'] is defined and message['tools'] is not none -%}
            {{- '<|tool|>' + message['tools'] + '<|/tool|>' -}}
        {%- endif -%}
        {{- '<|end|>' -}}
    {%- elif message['role'] == 'assistant' -%}
        {{- '<|assistant|>' + (message['content'] or '') -}}
        {%- if message['tool_calls'] -%}
            {%- set calls = namespace(items=[]) -%}
            {%- for tc in message['tool_calls'] -%}
                {%- set fn = tc.function if tc.function is defined else tc -%}
                {%- set calls.items = calls.items + [{'name': fn.name, 'arguments': fn.arguments}] -%}
            {%- endfor -%}
            {{- '<|tool_call|>' + (calls.items | tojson) + '<|/tool_call|>' -}}
        {%- endif -%}
        {{- '<|end|>' -}}
    {%- elif message['role'] == 'tool' -%}
        {{- '<|tool_response|>' + message['content'] + '<|end|>' -}}
    {%- else -%}
        {{- '<|' + message['role'] + '|>' + message['content'] + '<|end|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>' -}}
{%- else -%}
    {{- eos_token -}}
{%- endif -%}"""

# gpt-oss (harmony): a system header with the reasoning effort and channels, the conversation's system
# prompt and tools (a TypeScript-like ``functions`` namespace) in a developer message, tool calls on the
# commentary channel ending with <|call|>, tool results from functions.NAME, final answers on the final
# channel, and earlier reasoning dropped. No date line, so renders never depend on the clock.
GPT_OSS_CHAT_TEMPLATE = r"""{%- macro render_type(spec) -%}
    {%- if spec.enum is defined -%}
        {%- for value in spec.enum -%}
            {{- '"' + (value | string) + '"' -}}
            {%- if not loop.last %} | {% endif -%}
        {%- endfor -%}
    {%- elif spec.type == 'string' -%}
        {{- 'string' -}}
    {%- elif spec.type in ['number', 'integer'] -%}
        {{- 'number' -}}
    {%- elif spec.type == 'boolean' -%}
        {{- 'boolean' -}}
    {%- elif spec.type == 'array' -%}
        {{- (render_type(spec['items']) if spec['items'] is defined else 'any') + '[]' -}}
    {%- elif spec.type == 'object' -%}
        {{- 'object' -}}
    {%- else -%}
        {{- 'any' -}}
    {%- endif -%}
{%- endmacro -%}
{%- macro render_tools(tools) -%}
    {{- '## functions\n\nnamespace functions {\n\n' -}}
    {%- for tool in tools -%}
        {%- set fn = tool.function if tool.function is defined else tool -%}
        {%- if fn.description -%}
            {{- '// ' + fn.description + '\n' -}}
        {%- endif -%}
        {{- 'type ' + fn.name + ' = ' -}}
        {%- if fn.parameters and fn.parameters.properties -%}
            {{- '(_: {\n' -}}
            {%- for name, spec in fn.parameters.properties.items() -%}
                {%- if spec.description -%}
                    {{- '// ' + spec.description + '\n' -}}
                {%- endif -%}
                {{- name + ('' if name in (fn.parameters.required or []) else '?') + ': ' + render_type(spec) + ',\n' -}}
            {%- endfor -%}
            {{- '}) => any;\n\n' -}}
        {%- else -%}
            {{- '() => any;\n\n' -}}
        {%- endif -%}
    {%- endfor -%}
    {{- '} // namespace functions' -}}
{%- endmacro -%}
{%- if reasoning_effort is not defined -%}
    {%- set reasoning_effort = 'medium' -%}
{%- endif -%}
{{- '<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n\n' -}}
{{- 'Reasoning: ' + reasoning_effort + '\n\n' -}}
{{- '# Valid channels: analysis, commentary, final. Channel must be included for every message.' -}}
{%- if tools -%}
    {{- "\nCalls to these tools must go to the commentary channel: 'functions'." -}}
{%- endif -%}
{{- '<|end|>' -}}
{%- set ns = namespace(instructions='', last_user=-1, call_names=[], call_index=0) -%}
{%- for message in messages -%}
    {%- if message.role in ['system', 'developer'] and loop.first -%}
        {%- set ns.instructions = message.content -%}
    {%- elif message.role == 'user' -%}
        {%- set ns.last_user = loop.index0 -%}
    {%- endif -%}
{%- endfor -%}
{%- if ns.instructions or tools -%}
    {{- '<|start|>developer<|message|>' -}}
    {%- if ns.instructions -%}
        {{- '# Instructions\n\n' + ns.instructions -}}
        {%- if tools %}{{ '\n\n' }}{% endif -%}
    {%- endif -%}
    {%- if tools -%}
        {{- '# Tools\n\n' + render_tools(tools) -}}
    {%- endif -%}
    {{- '<|end|>' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message.role in ['system', 'developer'] and loop.first -%}
    {%- elif message.role == 'user' -%}
        {{- '<|start|>user<|message|>' + message.content + '<|end|>' -}}
    {%- elif message.role == 'assistant' -%}
        {%- set thinking = message.thinking if message.thinking is string else (message.reasoning_content if message.reasoning_content is string else '') -%}
        {%- if thinking and loop.index0 > ns.last_user -%}
            {{- '<|start|>assistant<|channel|>analysis<|message|>' + thinking + '<|end|>' -}}
        {%- endif -%}
        {%- if message.tool_calls -%}
            {%- set ns.call_names = [] -%}
            {%- set ns.call_index = 0 -%}
            {%- for tc in message.tool_calls -%}
                {%- set fn = tc.function if tc.function is defined else tc -%}
                {%- set ns.call_names = ns.call_names + [fn.name] -%}
                {{- '<|start|>assistant<|channel|>commentary to=functions.' + fn.name + ' <|constrain|>json<|message|>' -}}
                {{- (fn.arguments if fn.arguments is string else (fn.arguments | tojson)) + '<|call|>' -}}
            {%- endfor -%}
        {%- elif message.content -%}
            {{- '<|start|>assistant<|channel|>final<|message|>' + message.content + '<|end|>' -}}
        {%- endif -%}
    {%- elif message.role == 'tool' -%}
        {%- if message.name is defined and message.name -%}
            {%- set name = message.name -%}
        {%- elif ns.call_index < ns.call_names | length -%}
            {%- set name = ns.call_names[ns.call_index] -%}
        {%- else -%}
            {%- set name = 'unknown' -%}
        {%- endif -%}
        {%- set ns.call_index = ns.call_index + 1 -%}
        {{- '<|start|>functions.' + name + ' to=assistant<|channel|>commentary<|message|>' + message.content + '<|end|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start|>assistant' -}}
{%- endif -%}"""

# Qwen2.5-Instruct: ChatML with a default system prompt, tools as JSON lines inside <tools>, Hermes-style
# <tool_call> JSON, results as <tool_response> blocks in a user turn; no reasoning.
QWEN25_CHAT_TEMPLATE = r"""{%- if tools %}
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
