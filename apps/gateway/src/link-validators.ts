import { registerDecorator, type ValidationArguments } from 'class-validator';
import { checkAlias, checkExpiresAt, checkTargetUrl } from '@shortener/links';

/** The public host links may not point at; set once from PUBLIC_BASE_URL at start-up. */
export const publicHost = { value: null as string | null };

function ruleDecorator(name: string, rule: (value: string) => string | null): PropertyDecorator {
  return (target, propertyName) => {
    const messages = new WeakMap<object, string>();
    registerDecorator({
      name,
      target: target.constructor,
      propertyName: propertyName as string,
      validator: {
        validate(value: unknown, args: ValidationArguments) {
          if (typeof value !== 'string') return true; // IsString reports the type
          const problem = rule(value);
          if (problem) messages.set(args.object, problem);
          return problem === null;
        },
        defaultMessage(args: ValidationArguments) {
          return `${args.property} ${messages.get(args.object) ?? 'is invalid'}`;
        },
      },
    });
  };
}

export const IsTargetUrl = () => ruleDecorator('isTargetUrl', (value) => checkTargetUrl(value, publicHost.value));
export const IsAlias = () => ruleDecorator('isAlias', checkAlias);
export const IsFutureDateTime = () => ruleDecorator('isFutureDateTime', (value) => checkExpiresAt(value));
